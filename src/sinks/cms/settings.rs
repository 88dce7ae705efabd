//! The CMS adapter's slice of the settings: `RELAY_CMS_KIND` and the settings of each kind.
//!
//! Invariant: [`CmsSettings::read`] reads every CMS setting (whatever the kind) and checks
//! each value's form, refusing a setting that means nothing for the chosen kind; what a
//! kind requires is checked by [`CmsSettings::endpoint`], which the worker calls at start-up,
//! so a process that runs no worker does not need the CMS configured. Every error names
//! its setting; defaults come from the settings table.

use std::fmt;
use std::time::Duration;

use crate::config::{invalid, ConfigError, Secret, Vars};

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

/// The CMS settings as read: every value checked for form, nothing yet required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmsSettings {
    pub kind: CmsKind,
    /// `RELAY_CMS_URL`: the API base (for json, the entries collection).
    url: Option<String>,
    /// `RELAY_CMS_API_KEY`: the bearer token.
    token: Option<Secret>,
    /// `RELAY_CMS_RATE_LIMIT_WAIT`.
    rate_limit_wait: Duration,
    locale: String,
    publish: bool,
    contentful_space: Option<String>,
    contentful_environment: String,
    contentful_content_type: String,
    sanity_project: Option<String>,
    sanity_dataset: Option<String>,
    sanity_api_version: String,
    sanity_type: String,
    strapi_collection: String,
    strapi_entry_field: String,
}

/// Where and how the adapter writes: the checked settings of the chosen kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmsEndpoint {
    /// The API base without a trailing `/` (for json, the entries collection).
    pub url: String,
    /// The bearer token (optional for json only).
    pub token: Option<Secret>,
    /// The longest in-process wait for a rate limit to reset before the event goes to
    /// the retry tiers.
    pub rate_limit_wait: Duration,
    pub target: CmsTarget,
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

/// Contentful's rule for ids it accepts (space, environment, content type, entry):
/// `/^[a-zA-Z0-9-_.]{1,64}$/` (CMA reference, "Resource IDs").
pub(crate) fn is_contentful_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn checked(
    name: &'static str,
    value: String,
    ok: impl Fn(&str) -> bool,
    what: &str,
) -> Result<String, ConfigError> {
    if ok(&value) {
        Ok(value)
    } else {
        Err(invalid(name, format!("{value:?} is not {what}")))
    }
}

fn word(s: &str, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

impl CmsSettings {
    /// Reads every CMS setting and checks its form.
    pub fn read(v: &Vars) -> Result<Self, ConfigError> {
        let kind = v.one_of(
            KIND,
            &[
                ("json", CmsKind::Json),
                ("contentful", CmsKind::Contentful),
                ("sanity", CmsKind::Sanity),
                ("strapi", CmsKind::Strapi),
            ],
        )?;
        let publish: bool = v.parse(PUBLISH)?;
        if publish && kind != CmsKind::Contentful {
            return Err(invalid(
                PUBLISH,
                format!("publishing is a Contentful step; RELAY_CMS_KIND={kind} writes entries that are live as written"),
            ));
        }
        if v.get(LOCALE).is_some() && kind != CmsKind::Contentful {
            return Err(invalid(
                LOCALE,
                format!(
                    "only Contentful fields are localized; RELAY_CMS_KIND={kind} has no locale"
                ),
            ));
        }
        let url = v
            .url_opt(URL)?
            .map(|url| url.as_str().trim_end_matches('/').to_string());
        let contentful_id = |name: &'static str, value: String| {
            checked(
                name,
                value,
                is_contentful_id,
                "a Contentful id (1-64 of a-z A-Z 0-9 - _ .)",
            )
        };
        let api_version = v.get_or_default(SANITY_API_VERSION);
        let api_version = checked(
            SANITY_API_VERSION,
            api_version.trim_start_matches('v').to_string(),
            is_api_date,
            "an API version date like 2025-02-19",
        )?;
        Ok(CmsSettings {
            kind,
            url,
            token: v.secret(API_KEY),
            rate_limit_wait: v.duration(RATE_LIMIT_WAIT)?,
            locale: v.get_or_default(LOCALE),
            publish,
            contentful_space: v
                .get(CONTENTFUL_SPACE)
                .map(|s| contentful_id(CONTENTFUL_SPACE, s))
                .transpose()?,
            contentful_environment: contentful_id(
                CONTENTFUL_ENVIRONMENT,
                v.get_or_default(CONTENTFUL_ENVIRONMENT),
            )?,
            contentful_content_type: contentful_id(
                CONTENTFUL_CONTENT_TYPE,
                v.get_or_default(CONTENTFUL_CONTENT_TYPE),
            )?,
            sanity_project: v
                .get(SANITY_PROJECT)
                .map(|p| checked(SANITY_PROJECT, p, |p| word(p, b""), "a project id"))
                .transpose()?,
            sanity_dataset: v
                .get(SANITY_DATASET)
                .map(|d| checked(SANITY_DATASET, d, |d| word(d, b"_-"), "a dataset name"))
                .transpose()?,
            sanity_api_version: api_version,
            sanity_type: checked(
                SANITY_TYPE,
                v.get_or_default(SANITY_TYPE),
                |t| word(t, b"_") && !t.starts_with(|c: char| c.is_ascii_digit()),
                "a schema type name (letters, digits, _)",
            )?,
            strapi_collection: checked(
                STRAPI_COLLECTION,
                v.get_or_default(STRAPI_COLLECTION),
                |c| word(c, b"-_"),
                "a plural API id",
            )?,
            strapi_entry_field: checked(
                STRAPI_ENTRY_FIELD,
                v.get_or_default(STRAPI_ENTRY_FIELD),
                |f| word(f, b"_"),
                "an attribute name",
            )?,
        })
    }

    /// What the chosen kind needs, checked: called when a worker starts.
    pub fn endpoint(&self) -> Result<CmsEndpoint, ConfigError> {
        let kind = self.kind;
        let token = self.token.clone();
        if kind != CmsKind::Json && token.is_none() {
            return Err(ConfigError::Missing(API_KEY));
        }
        let required = |value: &Option<String>, name: &'static str| {
            value.clone().ok_or(ConfigError::Missing(name))
        };
        let (url, target) = match kind {
            CmsKind::Json => (required(&self.url, URL)?, CmsTarget::Json),
            CmsKind::Contentful => (
                self.url
                    .clone()
                    .unwrap_or_else(|| CONTENTFUL_DEFAULT_URL.to_string()),
                CmsTarget::Contentful(ContentfulSettings {
                    space: required(&self.contentful_space, CONTENTFUL_SPACE)?,
                    environment: self.contentful_environment.clone(),
                    content_type: self.contentful_content_type.clone(),
                    locale: self.locale.clone(),
                    publish: self.publish,
                }),
            ),
            CmsKind::Sanity => {
                let url = match (&self.url, &self.sanity_project) {
                    (Some(url), _) => url.clone(),
                    (None, Some(project)) => format!("https://{project}.api.sanity.io"),
                    (None, None) => return Err(ConfigError::Missing(SANITY_PROJECT)),
                };
                let target = CmsTarget::Sanity(SanitySettings {
                    dataset: required(&self.sanity_dataset, SANITY_DATASET)?,
                    api_version: self.sanity_api_version.clone(),
                    doc_type: self.sanity_type.clone(),
                });
                (url, target)
            }
            CmsKind::Strapi => (
                required(&self.url, URL)?,
                CmsTarget::Strapi(StrapiSettings {
                    collection: self.strapi_collection.clone(),
                    entry_field: self.strapi_entry_field.clone(),
                }),
            ),
        };
        Ok(CmsEndpoint {
            url,
            token,
            rate_limit_wait: self.rate_limit_wait,
            target,
        })
    }
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

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        Vars::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        )
    }

    fn endpoint(pairs: &[(&str, &str)]) -> Result<CmsEndpoint, ConfigError> {
        CmsSettings::read(&vars(pairs))?.endpoint()
    }

    #[test]
    fn json_is_the_default_and_needs_only_the_url() {
        let e = endpoint(&[(URL, "http://cms/v1/entries/")]).unwrap();
        assert_eq!(e.target, CmsTarget::Json);
        assert_eq!(e.url, "http://cms/v1/entries");
        assert_eq!(e.token, None);
        assert_eq!(e.rate_limit_wait, Duration::from_secs(10));
        let s = CmsSettings::read(&vars(&[])).unwrap();
        assert_eq!(s.kind, CmsKind::Json);
        assert_eq!(
            s.endpoint().unwrap_err().to_string(),
            "missing required setting RELAY_CMS_URL"
        );
    }

    #[test]
    fn contentful_settings_and_defaults() {
        let e = endpoint(&[
            (KIND, "contentful"),
            (API_KEY, "cfpat"),
            (CONTENTFUL_SPACE, "sp1"),
            (PUBLISH, "true"),
        ])
        .unwrap();
        assert_eq!(e.url, CONTENTFUL_DEFAULT_URL);
        assert_eq!(
            e.target,
            CmsTarget::Contentful(ContentfulSettings {
                space: "sp1".into(),
                environment: "master".into(),
                content_type: "guestSession".into(),
                locale: "en-US".into(),
                publish: true,
            })
        );
        let err = endpoint(&[(KIND, "contentful"), (API_KEY, "t")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing required setting RELAY_CONTENTFUL_SPACE"
        );
        let err = endpoint(&[(KIND, "contentful"), (CONTENTFUL_SPACE, "sp1")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing required setting RELAY_CMS_API_KEY"
        );
        let err = endpoint(&[
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
        let e = endpoint(&[
            (KIND, "sanity"),
            (API_KEY, "sk"),
            (SANITY_PROJECT, "abc123"),
            (SANITY_DATASET, "production"),
        ])
        .unwrap();
        assert_eq!(e.url, "https://abc123.api.sanity.io");
        assert_eq!(
            e.target,
            CmsTarget::Sanity(SanitySettings {
                dataset: "production".into(),
                api_version: "2025-02-19".into(),
                doc_type: "guestSession".into(),
            })
        );
        let err =
            endpoint(&[(KIND, "sanity"), (API_KEY, "sk"), (SANITY_DATASET, "d")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing required setting RELAY_SANITY_PROJECT"
        );
        let err = endpoint(&[(KIND, "sanity"), (SANITY_API_VERSION, "latest")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid value for RELAY_SANITY_API_VERSION"),
            "{err}"
        );
    }

    #[test]
    fn strapi_settings() {
        let e = endpoint(&[
            (KIND, "strapi"),
            (API_KEY, "tok"),
            (URL, "http://127.0.0.1:1337"),
        ])
        .unwrap();
        assert_eq!(
            e.target,
            CmsTarget::Strapi(StrapiSettings {
                collection: "guest-sessions".into(),
                entry_field: "conversationId".into()
            })
        );
        let err = endpoint(&[(KIND, "strapi"), (API_KEY, "tok")]).unwrap_err();
        assert_eq!(err.to_string(), "missing required setting RELAY_CMS_URL");
    }

    #[test]
    fn settings_of_another_kind_are_refused() {
        let err = endpoint(&[(URL, "http://cms"), (PUBLISH, "true")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid value for RELAY_CMS_PUBLISH"),
            "{err}"
        );
        let err = endpoint(&[(KIND, "strapi"), (LOCALE, "de")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid value for RELAY_CMS_LOCALE"),
            "{err}"
        );
        let err = endpoint(&[(KIND, "wordpress")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid value for RELAY_CMS_KIND"),
            "{err}"
        );
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let s = CmsSettings::read(&vars(&[
            (KIND, "strapi"),
            (API_KEY, "very-secret-token"),
            (URL, "http://s"),
        ]))
        .unwrap();
        assert!(!format!("{s:?}").contains("very-secret-token"));
        assert!(!format!("{:?}", s.endpoint().unwrap()).contains("very-secret-token"));
    }
}
