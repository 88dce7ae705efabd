//! `RELAY_ADMIN_TOKEN`: the one setting of the operator console.
//!
//! Invariant: with no token the console is off (every console page says so and nothing
//! else is served under `/console`); a token that is set is long enough to resist
//! guessing, or start-up fails naming the setting.

use crate::config::{ConfigError, Secret, Vars};

/// Shortest accepted `RELAY_ADMIN_TOKEN`, in characters.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Settings of the operator console.
#[derive(Debug, Clone, Default)]
pub struct ConsoleSettings {
    /// `RELAY_ADMIN_TOKEN`: bearer token and login secret; `None` turns the console off.
    pub token: Option<Secret>,
}

impl ConsoleSettings {
    /// Reads `RELAY_ADMIN_TOKEN`.
    pub(crate) fn read(v: &Vars) -> Result<Self, ConfigError> {
        let token = v.get("RELAY_ADMIN_TOKEN");
        if let Some(t) = &token {
            if t.chars().count() < MIN_TOKEN_CHARS {
                return Err(ConfigError::Invalid {
                    name: "RELAY_ADMIN_TOKEN".into(),
                    reason: format!(
                        "shorter than {MIN_TOKEN_CHARS} characters; use a random value (e.g. `openssl rand -hex 32`)"
                    ),
                });
            }
        }
        Ok(ConsoleSettings {
            token: token.map(Secret::new),
        })
    }
}
