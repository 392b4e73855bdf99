//! One error type for every core algorithm. The PostgreSQL glue maps each
//! [`ErrorKind`] to exactly one SQLSTATE (see `src/error.rs` in the extension crate).

use std::fmt;

/// What went wrong, in the terms docs/SQL.md uses for SQLSTATEs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed text input (SQLSTATE 22P02).
    InvalidText,
    /// Malformed binary / stored bytes (SQLSTATE 22P03).
    InvalidBinary,
    /// A bad parameter: precision, eps, delta, negative count, mismatched sketches (22023).
    InvalidParameter,
    /// Arithmetic overflow (22003).
    Overflow,
    /// A value of another type than a sketch holds (42804, datatype_mismatch).
    TypeMismatch,
}

/// An error with a message for the user and optional detail / hint lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreError {
    pub kind: ErrorKind,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl CoreError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CoreError {
            kind,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }
    pub fn invalid_text(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidText, message)
    }
    pub fn invalid_binary(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidBinary, message)
    }
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameter, message)
    }
    pub fn overflow(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Overflow, message)
    }
    pub fn type_mismatch(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TypeMismatch, message)
    }
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(d) = &self.detail {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for CoreError {}

pub type Result<T> = std::result::Result<T, CoreError>;
