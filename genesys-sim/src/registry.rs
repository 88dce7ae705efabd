//! A minimal Confluent-compatible schema registry (the API Redpanda's built-in registry
//! also speaks), enough for the relay's start-up registration and for tests that
//! resolve the schema id a record carries.
//!
//! Ids are global and start at 1: registering a schema that is already known, under
//! any subject, answers its existing id; a subject gets a new version only for a
//! schema it does not hold yet. Two schema texts are the same schema when they are
//! the same JSON (whitespace and escapes aside). Only Avro is supported, and a schema
//! must parse as Avro. Errors use the registry's shape, `{"error_code", "message"}`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde_json::{json, Map, Value};
use warp::http::{Method, StatusCode};

use super::exchange::{Reply, SimRequest};
use super::faults::lock;
use super::{Backend, Routed};

/// Content types the registry accepts on writes (besides none at all).
const CONTENT_TYPES: [&str; 3] = [
    "application/vnd.schemaregistry.v1+json",
    "application/vnd.schemaregistry+json",
    "application/json",
];

pub(crate) enum Route {
    Register(String),
    SchemaById(String),
    Subjects,
    Versions(String),
    Version(String, String),
}

#[derive(Default)]
struct Data {
    /// Schema texts as first registered; id = index + 1.
    schemas: Vec<String>,
    /// Normalised schema JSON -> id.
    ids: HashMap<String, u32>,
    /// Subject -> ids of its versions; version = index + 1.
    subjects: BTreeMap<String, Vec<u32>>,
}

#[derive(Default)]
pub(crate) struct Registry {
    data: Mutex<Data>,
}

fn registry_error(status: StatusCode, code: u32, message: &str) -> Reply {
    Reply::json(status, json!({"error_code": code, "message": message}))
}

fn invalid(message: &str) -> Reply {
    registry_error(StatusCode::UNPROCESSABLE_ENTITY, 42201, message)
}

fn subject_not_found(subject: &str) -> Reply {
    registry_error(
        StatusCode::NOT_FOUND,
        40401,
        &format!("Subject '{subject}' not found."),
    )
}

/// The schema of a registration body, validated, and its normalised form (the dedup key).
fn parse_registration(req: &SimRequest) -> Result<(String, String), Reply> {
    if let Some(content_type) = req.header("content-type") {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !CONTENT_TYPES
            .iter()
            .any(|t| t.eq_ignore_ascii_case(essence))
        {
            return Err(registry_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                415,
                &format!("unsupported content type {content_type}"),
            ));
        }
    }
    let body: Value = serde_json::from_slice(&req.body)
        .map_err(|e| invalid(&format!("request body is not valid JSON: {e}")))?;
    let Some(schema) = body.get("schema").and_then(Value::as_str) else {
        return Err(invalid("schema (a string) is required"));
    };
    match body.get("schemaType") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "AVRO" => {}
        Some(other) => {
            return Err(invalid(&format!(
                "schemaType {other} is not supported by the simulator (only AVRO)"
            )))
        }
    }
    let parsed: Value = serde_json::from_str(schema)
        .map_err(|e| invalid(&format!("Invalid schema: not JSON: {e}")))?;
    apache_avro::Schema::parse(&parsed).map_err(|e| invalid(&format!("Invalid schema: {e}")))?;
    Ok((schema.to_string(), parsed.to_string()))
}

impl Registry {
    fn register(&self, subject: &str, req: &SimRequest) -> Reply {
        let (text, key) = match parse_registration(req) {
            Ok(parsed) => parsed,
            Err(reply) => return reply,
        };
        let mut data = lock(&self.data);
        let id = match data.ids.get(&key) {
            Some(id) => *id,
            None => {
                data.schemas.push(text);
                let id = u32::try_from(data.schemas.len()).unwrap_or(u32::MAX);
                data.ids.insert(key, id);
                id
            }
        };
        let versions = data.subjects.entry(subject.to_string()).or_default();
        if !versions.contains(&id) {
            versions.push(id);
        }
        Reply::ok(json!({ "id": id }))
    }

    fn schema_by_id(&self, id: &str) -> Reply {
        let data = lock(&self.data);
        let schema = id
            .parse::<usize>()
            .ok()
            .and_then(|id| id.checked_sub(1))
            .and_then(|index| data.schemas.get(index));
        match schema {
            Some(schema) => Reply::ok(json!({ "schema": schema })),
            None => registry_error(StatusCode::NOT_FOUND, 40403, "Schema not found"),
        }
    }

    fn version(&self, subject: &str, version: &str) -> Reply {
        let data = lock(&self.data);
        let Some(versions) = data.subjects.get(subject) else {
            return subject_not_found(subject);
        };
        let index = match version {
            "latest" | "-1" => versions.len().checked_sub(1),
            v => v.parse::<usize>().ok().and_then(|v| v.checked_sub(1)),
        };
        let Some((index, id)) = index.and_then(|i| versions.get(i).map(|id| (i, *id))) else {
            return registry_error(StatusCode::NOT_FOUND, 40402, "Version not found.");
        };
        let schema = data
            .schemas
            .get(id as usize - 1)
            .cloned()
            .unwrap_or_default();
        Reply::ok(json!({
            "subject": subject,
            "version": index + 1,
            "id": id,
            "schema": schema,
        }))
    }
}

impl Backend for Registry {
    type Route = Route;

    fn route(&self, req: &SimRequest) -> Routed<Route> {
        let segs = req.segs();
        let found = |template, route| Routed::Found { template, route };
        match (&req.method, segs.as_slice()) {
            (&Method::POST, ["subjects", subject, "versions"]) if !subject.is_empty() => found(
                "POST /subjects/{subject}/versions",
                Route::Register(subject.to_string()),
            ),
            (&Method::GET, ["subjects", subject, "versions"]) if !subject.is_empty() => found(
                "GET /subjects/{subject}/versions",
                Route::Versions(subject.to_string()),
            ),
            (_, ["subjects", subject, "versions"]) if !subject.is_empty() => Routed::WrongMethod {
                path: "/subjects/{subject}/versions",
            },
            (&Method::GET, ["subjects", subject, "versions", version]) if !subject.is_empty() => {
                found(
                    "GET /subjects/{subject}/versions/{version}",
                    Route::Version(subject.to_string(), version.to_string()),
                )
            }
            (_, ["subjects", subject, "versions", _]) if !subject.is_empty() => {
                Routed::WrongMethod {
                    path: "/subjects/{subject}/versions/{version}",
                }
            }
            (&Method::GET, ["subjects"]) => found("GET /subjects", Route::Subjects),
            (_, ["subjects"]) => Routed::WrongMethod { path: "/subjects" },
            (&Method::GET, ["schemas", "ids", id]) => {
                found("GET /schemas/ids/{id}", Route::SchemaById(id.to_string()))
            }
            (_, ["schemas", "ids", _]) => Routed::WrongMethod {
                path: "/schemas/ids/{id}",
            },
            _ => Routed::NotFound,
        }
    }

    fn handle(&self, route: Route, req: &SimRequest) -> Reply {
        match route {
            Route::Register(subject) => self.register(&subject, req),
            Route::SchemaById(id) => self.schema_by_id(&id),
            Route::Subjects => {
                let subjects: Vec<String> = lock(&self.data).subjects.keys().cloned().collect();
                Reply::ok(json!(subjects))
            }
            Route::Versions(subject) => match lock(&self.data).subjects.get(&subject) {
                Some(ids) => Reply::ok(json!((1..=ids.len()).collect::<Vec<_>>())),
                None => subject_not_found(&subject),
            },
            Route::Version(subject, version) => self.version(&subject, &version),
        }
    }

    fn control(&self, _req: &SimRequest) -> Option<Reply> {
        None
    }

    fn stats(&self) -> Map<String, Value> {
        let data = lock(&self.data);
        let mut stats = Map::new();
        stats.insert("schemas".into(), json!(data.schemas.len()));
        stats.insert("subjects".into(), json!(data.subjects));
        stats
    }

    fn reset(&self) {
        *lock(&self.data) = Data::default();
    }
}

#[cfg(test)]
mod tests {
    use super::super::{start_schema_registry, SimServer};
    use serde_json::{json, Value};

    const RECORD_A: &str = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"long"}]}"#;
    const RECORD_B: &str =
        r#"{"type":"record","name":"B","fields":[{"name":"y","type":"string"}]}"#;
    const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

    async fn start() -> (SimServer, reqwest::Client) {
        let addr = "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!());
        let sim = start_schema_registry(addr).await.expect("registry starts");
        (sim, reqwest::Client::new())
    }

    async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON answer"))
    }

    async fn register(
        http: &reqwest::Client,
        sim: &SimServer,
        subject: &str,
        schema: &str,
    ) -> (u16, Value) {
        let url = format!("{}/subjects/{subject}/versions", sim.base_url());
        send(
            http.post(url)
                .header("content-type", CONTENT_TYPE)
                .body(json!({ "schema": schema }).to_string()),
        )
        .await
    }

    async fn get(http: &reqwest::Client, sim: &SimServer, path: &str) -> (u16, Value) {
        send(http.get(format!("{}{path}", sim.base_url()))).await
    }

    #[tokio::test]
    async fn same_schema_same_id_new_schema_new_id_and_version() {
        let (sim, http) = start().await;
        assert_eq!(
            register(&http, &sim, "t.raw-value", RECORD_A).await,
            (200, json!({"id": 1}))
        );
        // Again, and under another subject: the id is global.
        assert_eq!(
            register(&http, &sim, "t.raw-value", RECORD_A).await,
            (200, json!({"id": 1}))
        );
        let spaced = RECORD_A.replace(',', ", ");
        assert_eq!(
            register(&http, &sim, "other-value", &spaced).await,
            (200, json!({"id": 1}))
        );
        // A new schema under an existing subject: new id, new version.
        assert_eq!(
            register(&http, &sim, "t.raw-value", RECORD_B).await,
            (200, json!({"id": 2}))
        );
        assert_eq!(
            get(&http, &sim, "/subjects/t.raw-value/versions").await,
            (200, json!([1, 2]))
        );
        assert_eq!(
            get(&http, &sim, "/subjects/other-value/versions").await,
            (200, json!([1]))
        );
        assert_eq!(
            get(&http, &sim, "/subjects").await,
            (200, json!(["other-value", "t.raw-value"]))
        );
        assert_eq!(
            get(&http, &sim, "/schemas/ids/2").await,
            (200, json!({ "schema": RECORD_B }))
        );
        let (status, latest) = get(&http, &sim, "/subjects/t.raw-value/versions/latest").await;
        assert_eq!(status, 200);
        assert_eq!((&latest["id"], &latest["version"]), (&json!(2), &json!(2)));
        // application/json is accepted as well.
        let (status, body) = send(
            http.post(format!("{}/subjects/j-value/versions", sim.base_url()))
                .json(&json!({"schema": RECORD_B, "schemaType": "AVRO"})),
        )
        .await;
        assert_eq!((status, body), (200, json!({"id": 2})));
        // Stats count by route template, and reset forgets everything.
        let (_, stats) = get(&http, &sim, "/__sim/stats").await;
        assert_eq!(
            stats["requests"]["POST /subjects/{subject}/versions"]["200"],
            5
        );
        assert_eq!(stats["schemas"], 2);
        assert_eq!(stats["subjects"]["t.raw-value"], json!([1, 2]));
        let reset = http.post(format!("{}/__sim/reset", sim.base_url()));
        assert_eq!(send(reset).await.0, 200);
        assert_eq!(get(&http, &sim, "/subjects").await, (200, json!([])));
        assert_eq!(
            register(&http, &sim, "t.raw-value", RECORD_B).await,
            (200, json!({"id": 1}))
        );
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn unknown_ids_and_subjects_are_404() {
        let (sim, http) = start().await;
        let not_found = json!({"error_code": 40403, "message": "Schema not found"});
        assert_eq!(
            get(&http, &sim, "/schemas/ids/1").await,
            (404, not_found.clone())
        );
        assert_eq!(
            get(&http, &sim, "/schemas/ids/0").await,
            (404, not_found.clone())
        );
        assert_eq!(get(&http, &sim, "/schemas/ids/x").await, (404, not_found));
        let (status, body) = get(&http, &sim, "/subjects/nope/versions").await;
        assert_eq!((status, &body["error_code"]), (404, &json!(40401)));
        register(&http, &sim, "s", RECORD_A).await;
        let (status, body) = get(&http, &sim, "/subjects/s/versions/2").await;
        assert_eq!((status, &body["error_code"]), (404, &json!(40402)));
        let (_, stats) = get(&http, &sim, "/__sim/stats").await;
        assert_eq!(stats["requests"]["GET /schemas/ids/{id}"]["404"], 3);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn bad_json_and_bad_schemas_are_422_and_register_nothing() {
        let (sim, http) = start().await;
        let url = format!("{}/subjects/s/versions", sim.base_url());
        for body in [
            "not json".to_string(),
            json!({"schemaa": RECORD_A}).to_string(),
            json!({"schema": "{not json"}).to_string(),
            json!({"schema": r#"{"type":"record","name":"A"}"#}).to_string(),
            json!({"schema": RECORD_A, "schemaType": "PROTOBUF"}).to_string(),
        ] {
            let (status, answer) = send(
                http.post(&url)
                    .header("content-type", CONTENT_TYPE)
                    .body(body.clone()),
            )
            .await;
            assert_eq!(status, 422, "{body}: {answer}");
            assert_eq!(answer["error_code"], 42201, "{body}: {answer}");
            assert!(answer["message"].is_string());
        }
        let (status, _) = send(
            http.post(&url)
                .header("content-type", "text/plain")
                .body(json!({ "schema": RECORD_A }).to_string()),
        )
        .await;
        assert_eq!(status, 415);
        assert_eq!(get(&http, &sim, "/subjects").await, (200, json!([])));
        sim.shutdown().await;
    }
}
