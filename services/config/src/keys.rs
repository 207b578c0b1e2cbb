//! The config role's key layout (DESIGN.md), relative to the store root.

/// Separator between a phone's name and id in the name index (sorts before any printable
/// character, so "abc" phones list before "abcd" ones).
pub const NAME_SEP: char = '\u{1}';

pub const SITES: &str = "config/sites/";
pub const EDGE_GROUPS: &str = "config/edge-groups/";
pub const BASE_SETTINGS: &str = "config/base-settings/";
pub const PHONES: &str = "config/phones/";
pub const PEERS: &str = "config/peers/";
pub const MEMBERS: &str = "members/";

pub fn site(id: &str) -> String {
    format!("{SITES}{id}")
}
pub fn edge_group(id: &str) -> String {
    format!("{EDGE_GROUPS}{id}")
}
pub fn base_settings(id: &str) -> String {
    format!("{BASE_SETTINGS}{id}")
}
pub fn peer(id: &str) -> String {
    format!("{PEERS}{id}")
}
pub fn phone(id: &str) -> String {
    format!("{PHONES}{id}")
}
/// What the provisioning role last saw of a phone (ProvisionState).
pub fn provision(id: &str) -> String {
    format!("provision/{id}")
}
/// A phone's bindings, `bindings/{phone}/{line}/{node}` (written by edges on their lease).
pub fn phone_bindings(phone: &str) -> String {
    format!("bindings/{phone}/")
}
/// The actions an edge is asked to perform, `actions/{node}/{phone}`.
pub fn phone_actions(node: &str) -> String {
    format!("actions/{node}/")
}
/// The action an edge is asked to perform on one phone.
pub fn phone_action(node: &str, phone: &str) -> String {
    format!("actions/{node}/{phone}")
}
/// An edge's report on an action that carried an id.
pub fn action_result(action_id: &str) -> String {
    format!("action-results/{action_id}")
}
/// Hardware id → phone id (uniqueness).
pub fn hardware(hw: &str) -> String {
    format!("index/hardware/{hw}")
}
/// SIP user → phone id (uniqueness).
pub fn sip_user(user: &str) -> String {
    format!("index/sip-user/{user}")
}
/// Phones of a site.
pub fn site_phones(site: &str) -> String {
    format!("index/site-phones/{site}/")
}
/// Phones of a base-settings profile.
pub fn base_phones(base: &str) -> String {
    format!("index/base-phones/{base}/")
}
/// Phones by name.
pub const PHONE_NAMES: &str = "index/phone-names/";
pub fn phone_name(name: &str, id: &str) -> String {
    format!("{PHONE_NAMES}{name}{NAME_SEP}{id}")
}
/// Sites of an edge group.
pub fn group_sites(group: &str) -> String {
    format!("index/group-sites/{group}/")
}
