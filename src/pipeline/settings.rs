//! The worker's slice of the settings: downstream URLs, the CMS mapping, the route table
//! additions, retry tiers, concurrency and the idempotency memory.
//!
//! Invariant: everything here is parsed and checked when read (URLs, route names, the
//! attribute map), so a bad value stops start-up naming its setting; what the chosen CMS
//! requires (its URL, token, space or dataset), which only the worker needs, is checked by
//! [`WorkerSettings::cms_endpoint`].

use std::time::Duration;

use super::guest_scope::GuestScope;
use super::route_table::Target;
use crate::config::{invalid, split_list, ConfigError, Url, Vars};
use crate::sinks::cms::settings::{CmsEndpoint, CmsSettings};

/// How a Genesys attribute value (a string) becomes a CMS field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeType {
    String,
    Number,
    Bool,
}

/// One entry of `RELAY_ATTRIBUTE_MAP`: `name[:type][=field]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeMapping {
    /// The Genesys attribute name.
    pub name: String,
    /// How the attribute's string value is converted.
    pub kind: AttributeType,
    /// The CMS field name.
    pub field: String,
}

/// Which id names the CMS entry of a guest sync (`RELAY_CMS_ENTRY_KEY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKey {
    Conversation,
    Participant,
    ExternalContact,
}

/// What the worker is configured with.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// `RELAY_CMS_KIND`, `RELAY_CMS_URL`, `RELAY_CMS_API_KEY` and the settings of each CMS
    /// kind; checked for the chosen kind by [`WorkerSettings::cms_endpoint`].
    pub cms: CmsSettings,
    /// `RELAY_FORWARD_URL`: the HTTP backend of `forward` and enriched events.
    pub forward_url: Option<Url>,
    /// `RELAY_ATTRIBUTE_MAP`: Genesys attribute -> typed CMS field.
    pub attribute_map: Vec<AttributeMapping>,
    /// `RELAY_CMS_ENTRY_KEY`: which id names a guest sync's CMS entry.
    pub cms_entry_key: EntryKey,
    /// `RELAY_GUEST_SYNC_SCOPE`: which guests `guest_sync` writes.
    pub guest_scope: GuestScope,
    /// `RELAY_ROUTES`: `(pattern, target)` pairs tried before the default table.
    pub(crate) routes: Vec<(String, Target)>,
    /// `RELAY_RETRY_DELAYS`: one retry tier per delay, in order.
    pub retry_delays: Vec<Duration>,
    /// `RELAY_MAX_IN_FLIGHT`: records handled concurrently per consumer (at least 1).
    pub max_in_flight: usize,
    /// `RELAY_IDEMPOTENCY_CAPACITY`: idempotency marks kept in memory.
    pub idempotency_capacity: u64,
    /// `RELAY_IDEMPOTENCY_TTL`: how long a mark is kept in memory after its event was handled.
    pub idempotency_ttl: Duration,
}

impl WorkerSettings {
    pub fn read(v: &Vars) -> Result<Self, ConfigError> {
        Ok(WorkerSettings {
            cms: CmsSettings::read(v)?,
            forward_url: v.url_opt("RELAY_FORWARD_URL")?,
            attribute_map: parse_attribute_map(&v.get_or_default("RELAY_ATTRIBUTE_MAP"))?,
            cms_entry_key: v.one_of(
                "RELAY_CMS_ENTRY_KEY",
                &[
                    ("conversation", EntryKey::Conversation),
                    ("participant", EntryKey::Participant),
                    ("external_contact", EntryKey::ExternalContact),
                ],
            )?,
            guest_scope: v.one_of(
                "RELAY_GUEST_SYNC_SCOPE",
                &[
                    ("web_messaging", GuestScope::WebMessaging),
                    ("web_messaging_checked", GuestScope::WebMessagingChecked),
                    ("all", GuestScope::All),
                ],
            )?,
            routes: parse_routes(&v.get("RELAY_ROUTES").unwrap_or_default())?,
            retry_delays: v.durations("RELAY_RETRY_DELAYS")?,
            max_in_flight: v.parse::<usize>("RELAY_MAX_IN_FLIGHT")?.max(1),
            idempotency_capacity: v.parse("RELAY_IDEMPOTENCY_CAPACITY")?,
            idempotency_ttl: v.duration("RELAY_IDEMPOTENCY_TTL")?,
        })
    }

    /// Where guest sessions go, with what the chosen CMS kind requires checked; required
    /// by the worker.
    pub fn cms_endpoint(&self) -> Result<CmsEndpoint, ConfigError> {
        self.cms.endpoint()
    }

    /// Reads the settings from `pairs` (tests).
    #[cfg(test)]
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Result<Self, ConfigError> {
        Self::read(&Vars::from_pairs(pairs))
    }
}

/// Parses `cart_value:number,last_page=lastPage`: `name[:type][=field]`, type `string`
/// (default), `number` or `bool`; a bare name maps to the same CMS field.
fn parse_attribute_map(value: &str) -> Result<Vec<AttributeMapping>, ConfigError> {
    let bad = |pair: &str, why: &str| {
        invalid(
            "RELAY_ATTRIBUTE_MAP",
            format!("{pair:?} is not name[:type][=field] ({why})"),
        )
    };
    split_list(value)
        .iter()
        .map(|pair| {
            let (left, field) = match pair.split_once('=') {
                Some((left, field)) => (left.trim(), Some(field.trim())),
                None => (pair.as_str(), None),
            };
            let (name, kind) = match left.split_once(':') {
                Some((name, kind)) => (name.trim(), Some(kind.trim())),
                None => (left, None),
            };
            let kind = match kind {
                None | Some("string") => AttributeType::String,
                Some("number") => AttributeType::Number,
                Some("bool") => AttributeType::Bool,
                Some(_) => return Err(bad(pair, "type is string, number or bool")),
            };
            if name.is_empty() || field.is_some_and(str::is_empty) {
                return Err(bad(pair, "empty name or field"));
            }
            Ok(AttributeMapping {
                name: name.to_string(),
                kind,
                field: field.unwrap_or(name).to_string(),
            })
        })
        .collect()
}

/// Parses `RELAY_ROUTES`: `pattern=route` pairs separated by commas, route one of the
/// [`Target`] names; patterns are checked by the router.
fn parse_routes(value: &str) -> Result<Vec<(String, Target)>, ConfigError> {
    split_list(value)
        .iter()
        .map(|pair| {
            pair.rsplit_once('=')
                .and_then(|(pattern, route)| {
                    let target = Target::parse(route.trim())?;
                    let pattern = pattern.trim();
                    (!pattern.is_empty()).then(|| (pattern.to_string(), target))
                })
                .ok_or_else(|| {
                    let names: Vec<&str> = Target::ALL.iter().map(|t| t.as_str()).collect();
                    invalid(
                        "RELAY_ROUTES",
                        format!("{pair:?} is not pattern=route with route one of {names:?}"),
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::route_table::Route;
    use super::*;

    #[test]
    fn defaults_follow_the_design() {
        let w = WorkerSettings::from_pairs(&[]).unwrap();
        assert_eq!(w.max_in_flight, 256);
        assert_eq!(w.retry_delays, [5, 60, 600].map(Duration::from_secs));
        assert_eq!(w.attribute_map.len(), 4);
        assert_eq!(
            w.cms_endpoint().unwrap_err().to_string(),
            "missing required setting RELAY_CMS_URL"
        );
    }

    #[test]
    fn bad_values_are_rejected_with_the_name() {
        for (name, bad) in [
            ("RELAY_RETRY_DELAYS", "5s,soon"),
            ("RELAY_MAX_IN_FLIGHT", "many"),
            ("RELAY_CMS_URL", "cms/v1/entries"),
            ("RELAY_FORWARD_URL", "not a url"),
        ] {
            let err = WorkerSettings::from_pairs(&[(name, bad)]).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
        let w = WorkerSettings::from_pairs(&[("RELAY_CMS_URL", "http://cms:1/v1/entries/")]);
        assert_eq!(
            w.unwrap().cms_endpoint().unwrap().url,
            "http://cms:1/v1/entries"
        );
    }

    #[test]
    fn attribute_map_allows_renames() {
        let w =
            WorkerSettings::from_pairs(&[("RELAY_ATTRIBUTE_MAP", "cart_value=cartValue, tier")])
                .unwrap();
        assert_eq!(
            w.attribute_map,
            vec![
                AttributeMapping {
                    name: "cart_value".into(),
                    kind: AttributeType::String,
                    field: "cartValue".into()
                },
                AttributeMapping {
                    name: "tier".into(),
                    kind: AttributeType::String,
                    field: "tier".into()
                },
            ]
        );
    }

    #[test]
    fn attribute_map_types_and_errors() {
        let w = WorkerSettings::from_pairs(&[(
            "RELAY_ATTRIBUTE_MAP",
            "cart_value:number=cartValue,vip:bool,page:string",
        )])
        .unwrap();
        let kinds: Vec<_> = w.attribute_map.iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            [
                AttributeType::Number,
                AttributeType::Bool,
                AttributeType::String
            ]
        );
        assert_eq!(w.attribute_map[0].field, "cartValue");
        for bad in ["x:float", "=field", "x="] {
            let err = WorkerSettings::from_pairs(&[("RELAY_ATTRIBUTE_MAP", bad)]).unwrap_err();
            assert!(err.to_string().contains("RELAY_ATTRIBUTE_MAP"), "{bad}");
        }
    }

    #[test]
    fn routes_and_entry_key_are_validated() {
        let w = WorkerSettings::from_pairs(&[
            (
                "RELAY_ROUTES",
                "v2.users.{id}.presence=forward, custom:*=skip",
            ),
            ("RELAY_CMS_ENTRY_KEY", "external_contact"),
        ])
        .unwrap();
        assert_eq!(
            w.routes,
            [
                (
                    "v2.users.{id}.presence".to_string(),
                    Target::Route(Route::Forward)
                ),
                ("custom:*".to_string(), Target::Skip),
            ]
        );
        assert_eq!(w.cms_entry_key, EntryKey::ExternalContact);
        assert!(WorkerSettings::from_pairs(&[("RELAY_ROUTES", "x=nowhere")]).is_err());
        assert!(WorkerSettings::from_pairs(&[("RELAY_ROUTES", "=skip")]).is_err());
        assert!(WorkerSettings::from_pairs(&[("RELAY_CMS_ENTRY_KEY", "guest")]).is_err());
    }
}
