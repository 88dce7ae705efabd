# syntax=docker/dockerfile:1
#
# genesys-relay container image.
#
#   docker build -t genesys-relay:local .
#   docker run --rm genesys-relay:local --help
#
# Stage 1 builds the release binaries (rdkafka is built from source with cmake, with TLS
# and zstd); the `sim` stage holds the simulators; the last stage is a slim Debian runtime with only the shared libraries it links.

FROM rust:1-bookworm AS builder

RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential \
        cmake \
        libsasl2-dev \
        libssl-dev \
        libzstd-dev \
        pkg-config \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# Cache mounts keep the registry and the target directory between builds; the binary
# is copied out of the cached target directory so the next stage can use it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p genesys-relay --bin genesys-relay \
    && cargo build --release --locked -p genesys-sim --bin genesys-sim \
    && install -D -m 0755 target/release/genesys-relay /out/genesys-relay \
    && install -D -m 0755 target/release/genesys-sim /out/genesys-sim

# The simulators (`docker build --target sim`): their own image, so the relay image ships
# no fake OAuth server. They listen where --genesys-addr / --cms-addr say.
FROM debian:bookworm-slim AS sim
COPY --from=builder /out/genesys-sim /usr/local/bin/genesys-sim
USER 10001:10001
ENTRYPOINT ["genesys-sim"]

FROM debian:bookworm-slim AS runtime

RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates \
        libsasl2-2 \
        libssl3 \
        libzstd1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 relay \
    && useradd --system --uid 10001 --gid relay --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin relay

COPY --from=builder /out/genesys-relay /usr/local/bin/genesys-relay

USER 10001:10001

# 8080: webhook ingress (RELAY_HTTP_ADDR); 9464: /healthz, /readyz, /metrics (RELAY_ADMIN_ADDR).
EXPOSE 8080 9464

# No HEALTHCHECK: the slim image has no curl or wget; orchestrators should probe
# GET /healthz (liveness) and GET /readyz (readiness) on the admin port instead.
ENTRYPOINT ["genesys-relay"]
CMD ["serve"]
