//! `render::parse_documents` and `render::render` over arbitrary text (YAML or JSON manifests,
//! several documents): never panic, and the patch for a pod (template) only ever adds.

#![no_main]

use std::sync::LazyLock;

use json_patch::PatchOperation;
use libfuzzer_sys::fuzz_target;
use velero_hook_injector::admission::render;
use velero_hook_injector::hooks::template::Library;

static LIBRARY: LazyLock<Library> = LazyLock::new(|| Library::builtin().expect("builtin"));

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(docs) = render::parse_documents("fuzz", text) else {
        return;
    };
    for (i, doc) in docs.into_iter().enumerate() {
        let Ok(rendered) = render::render("fuzz", i + 1, doc, &LIBRARY) else {
            continue;
        };
        for op in &rendered.patch.0 {
            assert!(matches!(op, PatchOperation::Add(_)), "not an add: {op:?}");
        }
    }
});
