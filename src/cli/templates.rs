//! `templates list`, `templates show` and `templates validate`: the hook template library.

use anyhow::bail;

use velero_hook_injector::hooks::template::Library;
use velero_hook_injector::hooks::velero;

use super::{TemplatesAction, library};

/// The commands are JSON inside JSON: shows each shell script as the container runs it.
fn print_scripts(label: &str, annotations: &std::collections::BTreeMap<String, String>) {
    for (phase, key) in [
        ("pre-backup", "pre.hook.backup.velero.io/command"),
        ("post-backup", "post.hook.backup.velero.io/command"),
        ("post-restore", "post.hook.restore.velero.io/command"),
    ] {
        let argv = annotations
            .get(key)
            .map(|c| velero::parse_command(c))
            .unwrap_or_default();
        if let [sh, flag, script] = argv.as_slice() {
            if sh == "/bin/sh" && flag == "-c" {
                println!("\n# {label}{phase}: /bin/sh -c\n{script}");
            }
        }
    }
}

pub(crate) fn templates_command(
    action: TemplatesAction,
    templates: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    if let TemplatesAction::Validate { file } = &action {
        let found = Library::load_file(file)?;
        let names: Vec<&str> = found.iter().map(|t| t.name.as_str()).collect();
        let builtin = Library::builtin()?;
        for n in &names {
            let verb = if builtin.get(n).is_some() {
                "overrides built-in"
            } else {
                "adds"
            };
            println!("{}: template {n:?} is valid ({verb})", file.display());
        }
        println!("{}: {} template(s) valid", file.display(), names.len());
        return Ok(());
    }
    let library = library(templates)?;
    match action {
        TemplatesAction::Validate { .. } => {}
        TemplatesAction::List => {
            println!("{:<10} {:<11} {:<36} IMAGES", "NAME", "ENGINE", "HOOKS");
            for t in library.iter() {
                let mut phases = Vec::new();
                if t.hooks.pre_backup.is_some() {
                    phases.push("pre-backup");
                }
                if t.hooks.post_backup.is_some() {
                    phases.push("post-backup");
                }
                if t.hooks.post_restore.is_some() {
                    phases.push("post-restore");
                }
                println!(
                    "{:<10} {:<11} {:<36} {}",
                    t.name,
                    t.engine,
                    phases.join(","),
                    t.matcher.images.join(",")
                );
            }
        }
        TemplatesAction::Show { name, container } => {
            let Some(t) = library.get(&name) else {
                bail!(
                    "no template {name:?}; known: {}",
                    library.names().join(", ")
                );
            };
            println!("# {} ({})\n# {}", t.name, t.engine, t.description.trim());
            if let Some(r) = &t.matcher.versions {
                println!("# versions: {r}");
            }
            // Which of the two a pod gets is in its admission warning and in `render`'s.
            let snapshot = t.warning.as_deref().unwrap_or("as described above");
            println!("# backup method snapshot: {snapshot}");
            match &t.fs_backup {
                Some(fs) => println!("# backup method fs-backup: {}", fs.warning),
                None => println!(
                    "# backup method fs-backup: the same hooks; this template says nothing about file-by-file copies"
                ),
            }
            let annotations = t.annotations(&container);
            println!("{}", serde_json::to_string_pretty(&annotations)?);
            print_scripts("", &annotations);
            if let Some(dump) = t.dump_annotations(&container) {
                println!(
                    "\n# dump mode (file-system backup, when the pod's annotations allow it; the webhook also adds the vhi-dump volume and one backup.velero.io list, see docs/file-system-backup.md):\n{}",
                    serde_json::to_string_pretty(&dump)?
                );
                print_scripts("dump mode ", &dump);
            }
        }
    }
    Ok(())
}
