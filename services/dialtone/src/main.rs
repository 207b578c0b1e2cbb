//! `dialtone`: one binary, any set of roles.

// The edge allocates a little for every SIP message on two or more threads; glibc's malloc
// spends much of that time on arena locks (measured with perf under SIPp load). Built
// without the default `mimalloc` feature it keeps glibc's, for heap profilers that hook
// malloc.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What a runtime thread runs as it parks, at most every 900 ms (`dialtone_common::idle`):
/// frees the thread's empty pages and purges what has waited out mimalloc's delay.
#[cfg(feature = "mimalloc")]
fn collect_memory() {
    // SAFETY: mi_collect takes no pointer and may be called from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(false) }
}

mod admin;
mod data_dir;
mod edge_flags;
mod etcd_flags;
mod grpc_audit;
mod grpc_auth;
mod grpc_health;
mod grpc_incoming;
mod grpc_metrics;
mod grpc_tls_flags;
mod json_logs;
mod otlp_env;
mod otlp_metrics;
mod process_metrics;
mod prom_text;
mod provisioning_flags;
mod secret_file;
mod serve;
mod settings;
mod store_runtime;
mod telemetry;
mod tls_reload;

use std::ffi::OsString;

const USAGE: &str = "usage: dialtone serve [FLAGS]   (dialtone serve --help lists every flag)\n       dialtone --version";

fn main() -> std::process::ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match args.first().and_then(|a| a.to_str()) {
        Some("serve") => {
            args.remove(0);
        }
        Some("--version" | "-V") => {
            println!("dialtone {}", env!("CARGO_PKG_VERSION"));
            return std::process::ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return std::process::ExitCode::from(2);
        }
    }
    let cfg = match settings::ServeConfig::load(args) {
        Ok(c) => c,
        Err(e) => {
            if let Some(clap_err) = e.downcast_ref::<clap::Error>() {
                let _ = clap_err.print();
                return if clap_err.use_stderr() {
                    std::process::ExitCode::from(2)
                } else {
                    std::process::ExitCode::SUCCESS
                };
            }
            eprintln!("dialtone: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    #[cfg(feature = "mimalloc")]
    {
        let first = dialtone_common::idle::set_collector(collect_memory);
        debug_assert!(first, "the collector is set once, here");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(dialtone_common::idle::parked)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dialtone: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let telemetry = {
        let _in_runtime = rt.enter();
        telemetry::Telemetry::init(&cfg.log, cfg.log_format, cfg.node())
    };
    let code = match rt.block_on(serve::run(cfg)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "dialtone stopped with an error");
            eprintln!("dialtone: {e:#}");
            std::process::ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}
