//! Admin roles and the password policy: pure rules, no storage, no hashing.
//!
//! Roles are ordered: `owner` (everything, including admins and settings) ⊃ `admin` (merchants,
//! wallets, orders, rates) ⊃ `viewer` (read only). A route names the least role it needs.
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Viewer,
    Admin,
    Owner,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Owner, Role::Admin, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s.trim().to_ascii_lowercase().as_str() {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Least password length, in characters.
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longest password accepted (argon2 takes any length; this bounds the work per request).
pub const MAX_PASSWORD_LEN: usize = 256;

/// Why a username or password is refused; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "username must be 3 to 64 characters: letters, digits, '.', '_', '-' or '@', starting with a letter or digit"
    )]
    Username,
    #[error("password must be at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error("password must be at most {MAX_PASSWORD_LEN} characters")]
    TooLong,
    #[error("password must not contain the username")]
    ContainsUsername,
}

/// A username: 3–64 of `[A-Za-z0-9._@-]`, starting with a letter or digit; compared as given
/// (case-sensitive, like the unique index on every backend).
pub fn check_username(name: &str) -> Result<(), CredentialError> {
    let ok_len = (3..=64).contains(&name.chars().count());
    let ok_first = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok_len && ok_first && ok_chars {
        Ok(())
    } else {
        Err(CredentialError::Username)
    }
}

/// At least [`MIN_PASSWORD_LEN`] characters, and neither equal to nor containing the username
/// (case-insensitively).
pub fn check_password(username: &str, password: &str) -> Result<(), CredentialError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(CredentialError::TooShort);
    }
    if n > MAX_PASSWORD_LEN {
        return Err(CredentialError::TooLong);
    }
    let user = username.to_lowercase();
    if !user.is_empty() && password.to_lowercase().contains(&user) {
        return Err(CredentialError::ContainsUsername);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_owner_admin_viewer() {
        assert!(Role::Owner.allows(Role::Admin) && Role::Owner.allows(Role::Viewer));
        assert!(Role::Admin.allows(Role::Viewer) && !Role::Admin.allows(Role::Owner));
        assert!(!Role::Viewer.allows(Role::Admin));
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn passwords_need_twelve_characters_and_not_the_username() {
        assert_eq!(
            check_password("alice", "short"),
            Err(CredentialError::TooShort)
        );
        assert_eq!(
            check_password("alice", "xxAlice-2026-yy"),
            Err(CredentialError::ContainsUsername)
        );
        assert_eq!(
            check_password("alicealicealice", "alicealicealice"),
            Err(CredentialError::ContainsUsername)
        );
        assert!(check_password("alice", "correct horse battery").is_ok());
        // Characters, not bytes: twelve CJK characters are long enough.
        assert!(check_password("bob", "一二三四五六七八九十百千").is_ok());
    }

    #[test]
    fn usernames_are_plain_identifiers() {
        assert!(check_username("ops.alice@example").is_ok());
        for bad in ["ab", "-lead", "has space", "semi;colon", ""] {
            assert!(check_username(bad).is_err(), "{bad}");
        }
    }
}
