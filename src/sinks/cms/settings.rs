//! The CMS adapter's settings: `RELAY_CMS_KIND` and the settings of each kind, parsed
//! into typed structs and checked before anything starts.
//!
//! Invariant: a setting that is missing, malformed or meaningless for the chosen kind
//! fails start-up with an error naming it; [`CMS_SETTINGS`] is the one list of the names
//! read here, with their defaults and docs.

use std::fmt;
use std::time::Duration;

use crate::config::Secret;

/// Which CMS the guest sessions go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmsKind {
    /// The generic JSON API (`POST {url}`, 409 then `PUT {url}/{id}`).
    Json,
    /// Contentful's Content Management API.
    Contentful,
    /// Sanity's HTTP mutations API.
    Sanity,
    /// Strapi 5's REST API.
    Strapi,
}

impl CmsKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CmsKind::Json => "json",
            CmsKind::Contentful => "contentful",
            CmsKind::Sanity => "sanity",
            CmsKind::Strapi => "strapi",
        }
    }
}

impl fmt::Display for CmsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CmsKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "json" => Ok(CmsKind::Json),
            "contentful" => Ok(CmsKind::Contentful),
            "sanity" => Ok(CmsKind::Sanity),
            "strapi" => Ok(CmsKind::Strapi),
            other => Err(format!(
                "{other:?} is not one of json, contentful, sanity, strapi"
            )),
        }
    }
}

/// Why the CMS settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmsSettingsError {
    #[error("missing required setting {name} (needed by RELAY_CMS_KIND={kind})")]
    Missing { name: &'static str, kind: CmsKind },
    #[error("invalid value for {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

fn invalid(name: &'static str, reason: impl Into<String>) -> CmsSettingsError {
    CmsSettingsError::Invalid {
        name,
        reason: reason.into(),
    }
}

/// Everything the CMS adapter needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmsSettings {
    /// `RELAY_CMS_URL`: the API base (for json, the entries collection).
    pub url: String,
    /// `RELAY_CMS_API_KEY`: the bearer token (Contentful management token, Sanity token,
    /// Strapi API token; optional for json).
    pub token: Option<Secret>,
    /// `RELAY_CMS_RATE_LIMIT_WAIT`: the longest the adapter waits in-process for a rate
    /// limit to reset before handing the event to the retry tiers.
    pub rate_limit_wait: Duration,
    pub target: CmsTarget,
}

impl CmsSettings {
    pub fn kind(&self) -> CmsKind {
        match self.target {
            CmsTarget::Json => CmsKind::Json,
            CmsTarget::Contentful(_) => CmsKind::Contentful,
            CmsTarget::Sanity(_) => CmsKind::Sanity,
            CmsTarget::Strapi(_) => CmsKind::Strapi,
        }
    }
}

/// The kind-specific part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmsTarget {
    Json,
    Contentful(ContentfulSettings),
    Sanity(SanitySettings),
    Strapi(StrapiSettings),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentfulSettings {
    pub space: String,
    pub environment: String,
    /// The content type id of new entries (`X-Contentful-Content-Type`).
    pub content_type: String,
    /// The locale every field is written in.
    pub locale: String,
    /// Publish each entry after writing it (one more request).
    pub publish: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SanitySettings {
    pub dataset: String,
    /// The pinned API version date (`YYYY-MM-DD`), the `v{date}` path prefix.
    pub api_version: String,
    /// `_type` of the guest documents, also the prefix of their `_id`.
    pub doc_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrapiSettings {
    /// The collection's plural API id: `/api/{collection}`.
    pub collection: String,
    /// The collection's `unique` attribute holding the entry id.
    pub entry_field: String,
}

pub const KIND: &str = "RELAY_CMS_KIND";
pub const URL: &str = "RELAY_CMS_URL";
pub const API_KEY: &str = "RELAY_CMS_API_KEY";
pub const LOCALE: &str = "RELAY_CMS_LOCALE";
pub const PUBLISH: &str = "RELAY_CMS_PUBLISH";
pub const RATE_LIMIT_WAIT: &str = "RELAY_CMS_RATE_LIMIT_WAIT";
pub const CONTENTFUL_SPACE: &str = "RELAY_CONTENTFUL_SPACE";
pub const CONTENTFUL_ENVIRONMENT: &str = "RELAY_CONTENTFUL_ENVIRONMENT";
pub const CONTENTFUL_CONTENT_TYPE: &str = "RELAY_CONTENTFUL_CONTENT_TYPE";
pub const SANITY_PROJECT: &str = "RELAY_SANITY_PROJECT";
pub const SANITY_DATASET: &str = "RELAY_SANITY_DATASET";
pub const SANITY_API_VERSION: &str = "RELAY_SANITY_API_VERSION";
pub const SANITY_TYPE: &str = "RELAY_SANITY_TYPE";
pub const STRAPI_COLLECTION: &str = "RELAY_STRAPI_COLLECTION";
pub const STRAPI_ENTRY_FIELD: &str = "RELAY_STRAPI_ENTRY_FIELD";

/// The Contentful CMA host (EU data residency: `https://api.eu.contentful.com`).
pub const CONTENTFUL_DEFAULT_URL: &str = "https://api.contentful.com";
/// The Sanity API version the adapter was written against; a newer date is a deliberate
/// change, never implicit.
pub const SANITY_DEFAULT_API_VERSION: &str = "2025-02-19";

/// `(name, default, doc)` of every setting read here, for the settings table.
pub const CMS_SETTINGS: &[(&str, Option<&str>, &str)] = &[
    (KIND, Some("json"), "the CMS API: `json` (generic JSON API), `contentful` (Content Management API), `sanity` (HTTP mutations API) or `strapi` (Strapi 5 REST API)"),
    (LOCALE, Some("en-US"), "contentful: the locale every field is written in"),
    (PUBLISH, Some("false"), "contentful: publish the entry after each write (one more request per event)"),
    (RATE_LIMIT_WAIT, Some("10s"), "longest in-process wait for a CMS rate limit to reset (Contentful `X-Contentful-RateLimit-Reset`); a longer one goes to the retry tiers"),
    (CONTENTFUL_SPACE, None, "contentful: the space id (required)"),
    (CONTENTFUL_ENVIRONMENT, Some("master"), "contentful: the environment id"),
    (CONTENTFUL_CONTENT_TYPE, Some("guestSession"), "contentful: content type id of the guest entries"),
    (SANITY_PROJECT, None, "sanity: the project id; the API base defaults to `https://<project>.api.sanity.io` when `RELAY_CMS_URL` is unset"),
    (SANITY_DATASET, None, "sanity: the dataset (required)"),
    (SANITY_API_VERSION, Some(SANITY_DEFAULT_API_VERSION), "sanity: the pinned API version (`YYYY-MM-DD`)"),
    (SANITY_TYPE, Some("guestSession"), "sanity: `_type` of the guest documents (their `_id` is `<type>-<entry id>`)"),
    (STRAPI_COLLECTION, Some("guest-sessions"), "strapi: the collection type's plural API id (`/api/<collection>`)"),
    (STRAPI_ENTRY_FIELD, Some("conversationId"), "strapi: the collection's `unique` attribute that holds the entry id"),
];

/// Contentful's rule for ids it accepts (space, environment, content type, entry):
/// `/^[a-zA-Z0-9-_.]{1,64}$/` (CMA reference, "Resource IDs").
pub(crate) fn is_contentful_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Parses the CMS settings; `get` returns a setting's value when it is set (an empty
/// value counts as unset).
pub fn parse(
    get: impl Fn(&'static str) -> Option<String>,
) -> Result<CmsSettings, CmsSettingsError> {
    let get = |name: &'static str| get(name).filter(|v| !v.trim().is_empty());
    let kind: CmsKind = match get(KIND) {
        None => CmsKind::Json,
        Some(v) => v.parse().map_err(|e: String| invalid(KIND, e))?,
    };
    let required = |name: &'static str| get(name).ok_or(CmsSettingsError::Missing { name, kind });
    let or_default =
        |name: &'static str, default: &str| get(name).unwrap_or_else(|| default.to_string());

    let publish = match get(PUBLISH).as_deref().map(str::trim) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(invalid(PUBLISH, format!("{other:?} is not true or false"))),
    };
    if publish && kind != CmsKind::Contentful {
        return Err(invalid(
            PUBLISH,
            format!("publishing is a Contentful step; RELAY_CMS_KIND={kind} writes entries that are live as written"),
        ));
    }
    if get(LOCALE).is_some() && kind != CmsKind::Contentful {
        return Err(invalid(
            LOCALE,
            format!("only Contentful fields are localized; RELAY_CMS_KIND={kind} has no locale"),
        ));
    }
    let rate_limit_wait = humantime::parse_duration(&or_default(RATE_LIMIT_WAIT, "10s"))
        .map_err(|e| invalid(RATE_LIMIT_WAIT, e.to_string()))?;
    let token = get(API_KEY).map(Secret::new);
    if kind != CmsKind::Json && token.is_none() {
        return Err(CmsSettingsError::Missing {
            name: API_KEY,
            kind,
        });
    }

    let (url, target) = match kind {
        CmsKind::Json => (required(URL)?, CmsTarget::Json),
        CmsKind::Contentful => {
            let ids = |name: &'static str, value: String| {
                if is_contentful_id(&value) {
                    Ok(value)
                } else {
                    Err(invalid(
                        name,
                        format!("{value:?} is not a Contentful id (1-64 of a-z A-Z 0-9 - _ .)"),
                    ))
                }
            };
            let settings = ContentfulSettings {
                space: ids(CONTENTFUL_SPACE, required(CONTENTFUL_SPACE)?)?,
                environment: ids(
                    CONTENTFUL_ENVIRONMENT,
                    or_default(CONTENTFUL_ENVIRONMENT, "master"),
                )?,
                content_type: ids(
                    CONTENTFUL_CONTENT_TYPE,
                    or_default(CONTENTFUL_CONTENT_TYPE, "guestSession"),
                )?,
                locale: or_default(LOCALE, "en-US").trim().to_string(),
                publish,
            };
            (
                or_default(URL, CONTENTFUL_DEFAULT_URL),
                CmsTarget::Contentful(settings),
            )
        }
        CmsKind::Sanity => {
            let api_version = or_default(SANITY_API_VERSION, SANITY_DEFAULT_API_VERSION);
            if !is_api_date(api_version.trim_start_matches('v')) {
                return Err(invalid(
                    SANITY_API_VERSION,
                    format!("{api_version:?} is not a date like {SANITY_DEFAULT_API_VERSION}"),
                ));
            }
            let doc_type = or_default(SANITY_TYPE, "guestSession");
            if !doc_type
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
                || doc_type.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(invalid(
                    SANITY_TYPE,
                    format!("{doc_type:?} is not a schema type name (letters, digits, _)"),
                ));
            }
            let url = match get(URL) {
                Some(url) => url,
                None => {
                    let project = get(SANITY_PROJECT).ok_or(CmsSettingsError::Missing {
                        name: SANITY_PROJECT,
                        kind,
                    })?;
                    if !project.bytes().all(|b| b.is_ascii_alphanumeric()) {
                        return Err(invalid(
                            SANITY_PROJECT,
                            format!("{project:?} is not a project id"),
                        ));
                    }
                    format!("https://{project}.api.sanity.io")
                }
            };
            let settings = SanitySettings {
                dataset: required(SANITY_DATASET)?,
                api_version: api_version.trim_start_matches('v').to_string(),
                doc_type,
            };
            (url, CmsTarget::Sanity(settings))
        }
        CmsKind::Strapi => {
            let collection = or_default(STRAPI_COLLECTION, "guest-sessions");
            if collection.is_empty()
                || !collection
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid(
                    STRAPI_COLLECTION,
                    format!("{collection:?} is not a plural API id"),
                ));
            }
            let entry_field = or_default(STRAPI_ENTRY_FIELD, "conversationId");
            if !entry_field
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(invalid(
                    STRAPI_ENTRY_FIELD,
                    format!("{entry_field:?} is not an attribute name"),
                ));
            }
            (
                required(URL)?,
                CmsTarget::Strapi(StrapiSettings {
                    collection,
                    entry_field,
                }),
            )
        }
    };
    reqwest::Url::parse(&url).map_err(|e| invalid(URL, format!("{url:?}: {e}")))?;
    Ok(CmsSettings {
        url,
        token,
        rate_limit_wait,
        target,
    })
}

/// `YYYY-MM-DD` with plausible month and day.
fn is_api_date(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    match parts.as_slice() {
        [y, m, d] if y.len() == 4 && m.len() == 2 && d.len() == 2 => {
            let n = |p: &str| p.parse::<u32>().ok();
            matches!((n(y), n(m), n(d)), (Some(_), Some(1..=12), Some(1..=31)))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse_with(vars: &[(&'static str, &str)]) -> Result<CmsSettings, CmsSettingsError> {
        let vars: HashMap<&str, String> = vars.iter().map(|(k, v)| (*k, v.to_string())).collect();
        parse(|name| vars.get(name).cloned())
    }

    #[test]
    fn json_is_the_default_and_needs_only_the_url() {
        let s = parse_with(&[(URL, "http://cms/v1/entries")]).unwrap();
        assert_eq!(s.kind(), CmsKind::Json);
        assert_eq!(s.token, None);
        assert_eq!(s.rate_limit_wait, Duration::from_secs(10));
        assert_eq!(
            parse_with(&[]).unwrap_err(),
            CmsSettingsError::Missing {
                name: URL,
                kind: CmsKind::Json
            }
        );
    }

    #[test]
    fn contentful_settings_and_defaults() {
        let s = parse_with(&[
            (KIND, "contentful"),
            (API_KEY, "cfpat"),
            (CONTENTFUL_SPACE, "sp1"),
            (PUBLISH, "true"),
        ])
        .unwrap();
        assert_eq!(s.url, CONTENTFUL_DEFAULT_URL);
        assert_eq!(
            s.target,
            CmsTarget::Contentful(ContentfulSettings {
                space: "sp1".into(),
                environment: "master".into(),
                content_type: "guestSession".into(),
                locale: "en-US".into(),
                publish: true,
            })
        );
        let err = parse_with(&[(KIND, "contentful"), (API_KEY, "t")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing required setting RELAY_CONTENTFUL_SPACE (needed by RELAY_CMS_KIND=contentful)"
        );
        let err = parse_with(&[(KIND, "contentful"), (CONTENTFUL_SPACE, "sp1")]).unwrap_err();
        assert!(err.to_string().contains("RELAY_CMS_API_KEY"), "{err}");
        let err = parse_with(&[
            (KIND, "contentful"),
            (API_KEY, "t"),
            (CONTENTFUL_SPACE, "a/b"),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid value for RELAY_CONTENTFUL_SPACE"),
            "{err}"
        );
    }

    #[test]
    fn sanity_settings_and_the_project_url() {
        let s = parse_with(&[
            (KIND, "sanity"),
            (API_KEY, "sk"),
            (SANITY_PROJECT, "abc123"),
            (SANITY_DATASET, "production"),
        ])
        .unwrap();
        assert_eq!(s.url, "https://abc123.api.sanity.io");
        assert_eq!(
            s.target,
            CmsTarget::Sanity(SanitySettings {
                dataset: "production".into(),
                api_version: SANITY_DEFAULT_API_VERSION.into(),
                doc_type: "guestSession".into(),
            })
        );
        let err =
            parse_with(&[(KIND, "sanity"), (API_KEY, "sk"), (SANITY_DATASET, "d")]).unwrap_err();
        assert!(err.to_string().contains("RELAY_SANITY_PROJECT"), "{err}");
        let err = parse_with(&[
            (KIND, "sanity"),
            (API_KEY, "sk"),
            (URL, "http://127.0.0.1:1"),
            (SANITY_DATASET, "d"),
            (SANITY_API_VERSION, "latest"),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid value for RELAY_SANITY_API_VERSION"),
            "{err}"
        );
    }

    #[test]
    fn strapi_settings() {
        let s = parse_with(&[
            (KIND, "strapi"),
            (API_KEY, "tok"),
            (URL, "http://127.0.0.1:1337"),
        ])
        .unwrap();
        assert_eq!(
            s.target,
            CmsTarget::Strapi(StrapiSettings {
                collection: "guest-sessions".into(),
                entry_field: "conversationId".into()
            })
        );
    }

    #[test]
    fn settings_of_another_kind_are_refused() {
        let err = parse_with(&[(URL, "http://cms"), (PUBLISH, "true")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid value for RELAY_CMS_PUBLISH"),
            "{err}"
        );
        let err = parse_with(&[
            (KIND, "strapi"),
            (API_KEY, "t"),
            (URL, "http://s"),
            (LOCALE, "de"),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid value for RELAY_CMS_LOCALE"),
            "{err}"
        );
        let err = parse_with(&[(KIND, "wordpress")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid value for RELAY_CMS_KIND"),
            "{err}"
        );
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let s = parse_with(&[
            (KIND, "strapi"),
            (API_KEY, "very-secret-token"),
            (URL, "http://s"),
        ])
        .unwrap();
        assert!(!format!("{s:?}").contains("very-secret-token"));
    }
}
