//! The registrar wing: one actix actor per phone ([`phone`]), sharded over the actor
//! threads of the [`directory`], which also keeps the phones that fell asleep as bytes
//! ([`sleeping`]); the [`publisher`] writes their bindings to the store off the REGISTER
//! path; [`restore`] turns the bindings a restarted edge finds on its lease back into
//! sleeping phones. Every actor handler starts by counting its message in ([`pending::Pending`], the
//! one entry point of that protocol): the directory counts messages on their way to an
//! actor so it never puts a phone to sleep with one still in flight.

pub(crate) mod backlog;
pub(crate) mod directory;
pub(crate) mod pending;
pub(crate) mod phone;
pub(crate) mod publisher;
pub(crate) mod restore;
pub(crate) mod sleeping;
#[cfg(test)]
mod tests;
