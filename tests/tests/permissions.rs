//! Every config RPC against every permission, as the seeds scope them: the
//! `telephony:sitesmanagedphones` permissions manage phones only (view reads; add creates
//! and imports phones; edit updates, resets, migrates, rebalances and acts on phones;
//! delete deletes phones), and writing edge groups, sites, base settings, users, trunks,
//! peers and media servers takes `telephony:plugin:all`. Each call goes to a real node
//! with a token holding one permission; a call the token may make gets past the check
//! (whatever its empty request then earns), any other gets PERMISSION_DENIED.

use std::{future::Future, pin::Pin};

use dialtone_proto::config::v1 as pb;
use dialtone_tests::{
    ADD_ONLY_TOKEN, ADMIN_TOKEN, ClusterSandbox, ConfigClient, DELETE_ONLY_TOKEN, EDIT_ONLY_TOKEN,
    VIEWER_TOKEN,
};
use tonic::Code;

/// The permission a call needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Needs {
    All,
    View,
    Add,
    Edit,
    Delete,
}

type Call = fn(ConfigClient) -> Pin<Box<dyn Future<Output = Code> + Send>>;

fn code<T>(r: Result<T, tonic::Status>) -> Code {
    r.map_or_else(|s| s.code(), |_| Code::Ok)
}

macro_rules! rpcs {
    ($($name:ident($req:expr) => $needs:ident),* $(,)?) => {
        vec![$((
            stringify!($name),
            Needs::$needs,
            (|mut c: ConfigClient| -> Pin<Box<dyn Future<Output = Code> + Send>> {
                Box::pin(async move { code(c.$name($req).await) })
            }) as Call,
        )),*]
    };
}

fn get() -> pb::GetRequest {
    pb::GetRequest {
        id: "nothing".into(),
    }
}

fn delete() -> pb::DeleteRequest {
    pb::DeleteRequest {
        id: "nothing".into(),
        version: 0,
    }
}

fn import() -> impl tokio_stream::Stream<Item = pb::ImportPhonesRequest> + Send + 'static {
    tokio_stream::iter(vec![pb::ImportPhonesRequest::default()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_config_rpc_takes_the_permission_the_seeds_give_it() {
    let sb = ClusterSandbox::with_etcd(1, &["config"]).await.unwrap();
    let table = rpcs![
        create_edge_group(pb::CreateEdgeGroupRequest::default()) => All,
        get_edge_group(get()) => View,
        update_edge_group(pb::UpdateEdgeGroupRequest::default()) => All,
        delete_edge_group(delete()) => All,
        list_edge_groups(pb::ListRequest::default()) => View,
        create_peer(pb::CreatePeerRequest::default()) => All,
        get_peer(get()) => View,
        update_peer(pb::UpdatePeerRequest::default()) => All,
        delete_peer(delete()) => All,
        list_peers(pb::ListRequest::default()) => View,
        create_media_server(pb::CreateMediaServerRequest::default()) => All,
        get_media_server(get()) => View,
        update_media_server(pb::UpdateMediaServerRequest::default()) => All,
        delete_media_server(delete()) => All,
        list_media_servers(pb::ListRequest::default()) => View,
        create_user(pb::CreateUserRequest::default()) => All,
        get_user(get()) => View,
        update_user(pb::UpdateUserRequest::default()) => All,
        delete_user(delete()) => All,
        list_users(pb::ListRequest::default()) => View,
        create_trunk(pb::CreateTrunkRequest::default()) => All,
        get_trunk(get()) => View,
        update_trunk(pb::UpdateTrunkRequest::default()) => All,
        delete_trunk(delete()) => All,
        list_trunks(pb::ListRequest::default()) => View,
        create_site(pb::CreateSiteRequest::default()) => All,
        get_site(get()) => View,
        update_site(pb::UpdateSiteRequest::default()) => All,
        delete_site(delete()) => All,
        list_sites(pb::ListRequest::default()) => View,
        rebalance_site(pb::RebalanceSiteRequest::default()) => Edit,
        get_templates(pb::GetTemplatesRequest::default()) => View,
        create_base_settings(pb::CreateBaseSettingsRequest::default()) => All,
        get_base_settings(get()) => View,
        update_base_settings(pb::UpdateBaseSettingsRequest::default()) => All,
        delete_base_settings(delete()) => All,
        list_base_settings(pb::ListRequest::default()) => View,
        migrate_base_settings(pb::MigrateBaseSettingsRequest::default()) => Edit,
        create_phone(pb::CreatePhoneRequest::default()) => Add,
        get_phone(get()) => View,
        update_phone(pb::UpdatePhoneRequest::default()) => Edit,
        delete_phone(delete()) => Delete,
        list_phones(pb::ListPhonesRequest::default()) => View,
        reset_line_password(pb::ResetLinePasswordRequest::default()) => Edit,
        reset_device_password(pb::ResetDevicePasswordRequest::default()) => Edit,
        import_phones(import()) => Add,
        export_phones(pb::ListPhonesRequest::default()) => View,
        restart_phone(pb::PhoneActionRequest::default()) => Edit,
        resync_phone(pb::PhoneActionRequest::default()) => Edit,
        log_out_phone(pb::PhoneActionRequest::default()) => Edit,
        act_on_phones(pb::ActOnPhonesRequest::default()) => Edit,
        list_members(pb::ListMembersRequest::default()) => View,
    ];
    assert_eq!(table.len(), 52, "every rpc of ConfigService");
    // (token, the one permission it holds)
    let tokens = [
        (ADMIN_TOKEN, Needs::All),
        (VIEWER_TOKEN, Needs::View),
        (ADD_ONLY_TOKEN, Needs::Add),
        (EDIT_ONLY_TOKEN, Needs::Edit),
        (DELETE_ONLY_TOKEN, Needs::Delete),
    ];
    let mut wrong = Vec::new();
    for (token, holds) in tokens {
        let client = sb.nodes[0].config_client(token).await.unwrap();
        for (name, needs, call) in &table {
            let got = call(client.clone()).await;
            let allowed = holds == Needs::All || holds == *needs;
            let denied = got == Code::PermissionDenied;
            if allowed == denied || got == Code::Unauthenticated {
                wrong.push(format!("{name} with {holds:?}: {got:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
