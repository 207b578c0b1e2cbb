//! The cluster sandbox used by every cross-service test: real `etcd` members and real
//! `dialtone` processes with chosen roles, on 127.0.0.1 ports chosen by the OS, waited on
//! until ready, killed (and their files removed) when dropped.
//!
//! Everything is used as `dialtone_tests::X`; the modules below only sort it by concern.

pub mod browser;
pub mod carriers;
pub mod fleet;
pub mod media;
pub mod netns;
pub mod pki;
pub mod sip;
pub mod softphones;
pub mod turn;
pub mod ws;

mod clients;
mod etcd;
mod http;
mod node;
mod ports;
mod process;
mod sandbox;

pub use clients::{BearerAuth, ConfigClient, EdgeClient, ProvisioningClient, StatusClient};
pub use etcd::{EtcdCluster, EtcdMember};
pub use http::{http_get, http_request, http_request_within};
pub use node::{Node, NodeSpec};
pub use ports::{SipPorts, free_port, free_port_pair};
pub(crate) use process::kill9;
pub use process::{binary, dialtonectl, serve_refused, sipvicious, wait_or_kill};
pub use sandbox::{
    ADD_ONLY_TOKEN, ADDER_TOKEN, ADMIN_TOKEN, ClusterSandbox, DELETE_ONLY_TOKEN, EDIT_ONLY_TOKEN,
    VIEWER_TOKEN, write_test_tokens,
};

/// The update mask of a read-modify-write update: the whole object.
pub fn whole() -> Vec<String> {
    vec!["*".to_owned()]
}

/// The tests' Python (`scripts/deps.sh --test` makes it: jsonschema, Playwright):
/// `$DIALTONE_TEST_VENV/bin/python`, by default under `~/.cache/dialtone/test-venv`.
pub fn test_python() -> std::path::PathBuf {
    std::env::var_os("DIALTONE_TEST_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(&std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/dialtone/test-venv")
        })
        .join("bin/python")
}
