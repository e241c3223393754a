//! mysql: the deployment facts of its images (filled in by the mysql work of the "Real
//! deployments" issue; until then every pod is a primary with no problems).

use super::{Deployment, Subject};

/// Assesses a mysql pod.
pub(super) fn assess(_subject: &Subject<'_>) -> Deployment {
    Deployment::default()
}
