//! Command lines dialtonectl itself refuses: a value that does not parse, flags that do not
//! go together. They exit 2, as clap's own refusals and the server's INVALID_ARGUMENT do
//! (see `EXIT_CODES`), so a script can tell a typo from a failure.

use std::fmt;

/// A refused command line; its message names the flag and the value.
#[derive(Debug)]
pub struct BadInput(String);

impl BadInput {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// `return Err(BadInput)` with a formatted message, as `anyhow::bail!` does.
macro_rules! refuse {
    ($($arg:tt)*) => {
        return Err($crate::refuse::BadInput::new(format!($($arg)*)).into())
    };
}
pub(crate) use refuse;

/// `with_context` for values from the command line: the failure is a [`BadInput`] (the
/// reason a `Result` gives is kept after the message).
pub trait OrRefuse<T> {
    fn or_refuse(self, message: impl FnOnce() -> String) -> anyhow::Result<T>;
}

impl<T> OrRefuse<T> for Option<T> {
    fn or_refuse(self, message: impl FnOnce() -> String) -> anyhow::Result<T> {
        self.ok_or_else(|| BadInput::new(message()).into())
    }
}

impl<T, E: fmt::Display> OrRefuse<T> for Result<T, E> {
    fn or_refuse(self, message: impl FnOnce() -> String) -> anyhow::Result<T> {
        self.map_err(|e| BadInput::new(format!("{}: {e}", message())).into())
    }
}
