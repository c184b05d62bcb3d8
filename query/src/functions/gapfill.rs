//! Gap filling (to come).

use datafusion::common::Result;
use datafusion::execution::SessionState;

/// Registers the gap-filling functions.
pub fn register(_state: &mut SessionState) -> Result<()> {
    Ok(())
}
