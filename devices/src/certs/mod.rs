//! Certificates, sans IO: the fleet CA (issuing and reading certificates), the registry of
//! certificates with its status rules, and fleet provisioning by claim (docs/plans/issue-15.md).

pub mod ca;
pub mod enrolled;
pub mod provision;
pub mod registry;

/// The longest provisioning template name (AWS's limit).
pub const MAX_TEMPLATE_NAME: usize = 36;

/// A provisioning template name, as AWS allows them: 1 to 36 letters, digits, `_` or `-`.
pub fn check_template_name(name: &str) -> Result<(), ca::CaError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TEMPLATE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ca::CaError(format!(
            "template name {name:?}: 1 to {MAX_TEMPLATE_NAME} letters, digits, '_' or '-'"
        )))
    }
}
