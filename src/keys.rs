//! This product's own labels and annotations.

/// The prefix of every key below (the webhook's match condition calls it for any pod annotation
/// with this prefix).
pub const ANNOTATION_PREFIX: &str = "velero-hook-injector.io/";

/// Namespace label that opts a namespace in (the webhook's namespaceSelector).
pub const NAMESPACE_OPT_IN: &str = "velero-hook-injector.io/inject";
/// Pod annotation: `"false"` opts the pod out.
pub const INJECT: &str = "velero-hook-injector.io/inject";
/// Pod annotation: force a template by name (`none` disables injection).
pub const TEMPLATE: &str = "velero-hook-injector.io/template";
/// Pod annotation: the container the hooks run in.
pub const CONTAINER: &str = "velero-hook-injector.io/container";
/// Pod annotation written by the webhook: `<template>/<container>` that was injected.
pub const INJECTED: &str = "velero-hook-injector.io/injected";
/// Pod annotation written by the webhook: why a detected database was deliberately skipped.
pub const SKIPPED: &str = "velero-hook-injector.io/skipped";
/// Pod annotation: `snapshot` or `fs-backup` forces how the hooks assume Velero copies the data.
pub const BACKUP_METHOD: &str = "velero-hook-injector.io/backup-method";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_the_prefix() {
        for key in [
            NAMESPACE_OPT_IN,
            INJECT,
            TEMPLATE,
            CONTAINER,
            INJECTED,
            SKIPPED,
            BACKUP_METHOD,
            crate::admission::policy::EXCEPTION_ANNOTATION,
            crate::admission::policy::MODE_ANNOTATION,
        ] {
            assert!(key.starts_with(ANNOTATION_PREFIX), "{key}");
        }
    }
}
