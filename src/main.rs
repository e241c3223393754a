//! velero-hook-injector command line: serve the webhook, render manifests offline, inspect templates.

mod cli;

use anyhow::Context;
use clap::Parser;

use velero_hook_injector::cluster::audit;
use velero_hook_injector::pod::backup_method::ClusterDefaults;
use velero_hook_injector::reconcile::apply::ApplyOptions;
use velero_hook_injector::server::ServeConfig;

use cli::audit::audit_command;
use cli::certs::certs_command;
use cli::exit::{FAILURE, error_report, exit_code, exit_with};
use cli::render::{check_command, render_command};
use cli::restore_report::restore_report_command;
use cli::serve::{dev_certificates, init_logging, serve};
use cli::templates::templates_command;
use cli::{Cli, Command};

// `main` prints errors itself rather than returning them: the standard library prints a returned
// error with `{:?}`, which for anyhow includes a stack backtrace whenever RUST_BACKTRACE or
// RUST_LIB_BACKTRACE is set in the user's environment.
fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        end_quietly_on_closed_stdout();
    }
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprint!("{}", error_report(&e));
            std::process::ExitCode::from(FAILURE)
        }
    }
}

/// `velero-hook-injector ... | head -1` closes stdout early. Rust ignores SIGPIPE, so every
/// print!/println! after that would panic ("failed printing to stdout: Broken pipe"). The
/// commands other than `serve` take the signal's default instead, as `cat` does: the process
/// ends quietly at its next write and the shell sees the status it expects of a pipeline.
/// `serve` keeps ignoring it: a client that hangs up must not end the server.
fn end_quietly_on_closed_stdout() {
    // SAFETY: called once at start, before any thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            addr,
            tls_cert,
            tls_key,
            certs_dir,
            log_format,
            reload_interval,
            drain_timeout,
            shutdown_delay,
            idle_timeout,
            mode,
            templates,
            namespace_policy,
            worker_threads,
            reconcile,
            default_volumes_to_fs_backup,
        } => {
            init_logging(log_format);
            let (cert, key) = match (tls_cert, tls_key) {
                (Some(c), Some(k)) => (c, k),
                _ => dev_certificates(&certs_dir, addr)?,
            };
            let cfg = ServeConfig {
                addr,
                cert,
                key,
                reload_interval,
                drain_timeout,
                shutdown_delay,
                idle_timeout,
            };
            let workers = worker_threads.map_or_else(
                || {
                    std::thread::available_parallelism()
                        .map_or(1, |n| n.get())
                        .min(2)
                },
                |n| n.get(),
            );
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let defaults = ClusterDefaults {
                default_volumes_to_fs_backup,
            };
            runtime.block_on(serve(
                cfg,
                mode,
                templates,
                namespace_policy,
                reconcile,
                defaults,
            ))
        }
        Command::Render {
            files,
            templates,
            check: true,
            output,
            default_volumes_to_fs_backup,
            ..
        } => exit_with(check_command(
            &files,
            templates.as_deref(),
            output,
            ClusterDefaults {
                default_volumes_to_fs_backup,
            },
        )),
        Command::Render {
            files,
            patch,
            templates,
            default_volumes_to_fs_backup,
            ..
        } => render_command(
            &files,
            patch,
            templates.as_deref(),
            ClusterDefaults {
                default_volumes_to_fs_backup,
            },
        ),
        Command::Audit {
            namespace,
            all_namespaces,
            context,
            kubeconfig,
            output,
            templates,
            apply,
            dry_run,
            include_drift,
            mode,
            exclude_namespaces,
            default_volumes_to_fs_backup,
            velero_namespace,
        } => {
            let defaults = ClusterDefaults {
                default_volumes_to_fs_backup,
            };
            let apply = apply.then_some(ApplyOptions {
                dry_run,
                include_drift,
                cluster_mode: mode,
                excluded: exclude_namespaces,
                backup_defaults: defaults,
            });
            exit_code(audit_command(
                namespace,
                all_namespaces,
                audit::ClientOptions {
                    kubeconfig,
                    context,
                },
                output,
                templates.as_deref(),
                apply,
                audit::Velero {
                    defaults,
                    namespace: velero_namespace,
                },
            ))
        }
        Command::RestoreReport {
            restore,
            velero_namespace,
            wait,
            timeout,
            output,
            context,
            kubeconfig,
            templates,
        } => exit_code(restore_report_command(cli::restore_report::Args {
            target: velero_hook_injector::cluster::restore_source::Target {
                restore,
                velero_namespace,
            },
            wait: wait.then_some(timeout),
            output,
            client: audit::ClientOptions {
                kubeconfig,
                context,
            },
            templates,
        })),
        Command::Templates { action, templates } => templates_command(action, templates.as_deref()),
        Command::Certs {
            service,
            namespace,
            out,
            days,
        } => certs_command(&service, &namespace, &out, days),
    }
}
