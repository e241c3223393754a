//! mongodb: the deployment facts of its images (filled in by the mongodb work of the "Real
//! deployments" issue; until then every pod is a primary with no problems).

use super::{Deployment, Subject};

/// Assesses a mongodb pod.
pub(super) fn assess(_subject: &Subject<'_>) -> Deployment {
    Deployment::default()
}
