//! Admin roles: what an admin credential may do (docs/admin.md, "Roles").
//!
//! Three levels, each including the one below it:
//! - `viewer`: reads (every `GET` of the admin API and `GET /metrics`);
//! - `operator`: also changes tokens, users (with top-ups), providers and
//!   their keys, models, redirects and prices;
//! - `admin`: also admin keys, other keys' sessions, and secret rotation.
//!
//! The least role of each route is declared beside it in the route table
//! (`crate::http::routes`) and enforced in one place, the `AdminAuth`
//! extractor. The master key acts as `admin`.

use serde::{Deserialize, Serialize};

/// An admin key's role; ordered, so `role >= needed` is the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

/// The role of a key registered without one (`POST /admin/admin-keys`,
/// `switchyard admin-keys add`). `admin`, the role every key had before
/// roles existed, so scripts that register keys keep working; a narrower key
/// is asked for explicitly (docs/admin.md explains the choice).
pub const DEFAULT_ROLE: Role = Role::Admin;

impl Role {
    /// Every role, least first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// The role named `text` (exactly as [`Role::as_str`] writes it).
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }

    /// Whether a caller of this role may use a route that needs `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_round_trip() {
        assert!(Role::Admin.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::Viewer));
        assert!(Role::Viewer.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Operator));
        assert!(!Role::Operator.allows(Role::Admin));
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("Admin"), None);
        assert_eq!(Role::parse(""), None);
    }
}
