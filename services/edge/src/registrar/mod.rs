//! The registrar wing: each phone's actor run in place ([`phone`]: bindings, nonce counts,
//! the last transaction, handled one message at a time under its shard's lock), kept by the
//! [`directory`], which also keeps the phones that fell asleep as bytes ([`sleeping`]) and
//! checks phones when they are due; the [`publisher`] writes their bindings to the store off
//! the REGISTER path; [`restore`] turns the bindings a restarted edge finds on its lease back
//! into sleeping phones.

pub(crate) mod backlog;
pub(crate) mod directory;
mod due;
pub(crate) mod phone;
pub(crate) mod publisher;
pub(crate) mod restore;
pub(crate) mod sleeping;
#[cfg(test)]
pub(crate) mod tests;
