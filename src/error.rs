//! The one place where core errors become PostgreSQL errors (docs/SQL.md, "Errors"):
//! text input 22P02, binary input 22P03, bad parameters 22023, overflow 22003, a value of
//! another type than a cms counts 42804.

use distributed_counter_core::{CoreError, ErrorKind};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

pub fn sqlstate(kind: ErrorKind) -> PgSqlErrorCode {
    match kind {
        ErrorKind::InvalidText => PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
        ErrorKind::InvalidBinary => PgSqlErrorCode::ERRCODE_INVALID_BINARY_REPRESENTATION,
        ErrorKind::InvalidParameter => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        ErrorKind::Overflow => PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
        ErrorKind::TypeMismatch => PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
    }
}

/// Raise `err` as an ERROR. Never returns.
pub fn raise(err: CoreError) -> ! {
    raise_as(sqlstate(err.kind), err)
}

/// Raise with an explicit SQLSTATE (e.g. a text input function reporting a bad decoded
/// payload as 22P02 rather than the decoder's 22P03).
pub fn raise_as(code: PgSqlErrorCode, err: CoreError) -> ! {
    let mut report = ErrorReport::new(code, err.message, "distributed_counter");
    if let Some(detail) = err.detail {
        report = report.set_detail(detail);
    }
    if let Some(hint) = err.hint {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Unwrap a core result or raise its error.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
    /// Like `or_raise`, but binary-format errors are reported as text-input errors
    /// (used by text input functions, whose contract is 22P02).
    fn or_raise_text(self) -> T;
}

impl<T> OrRaise<T> for Result<T, CoreError> {
    #[inline]
    fn or_raise(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => raise(e),
        }
    }
    #[inline]
    fn or_raise_text(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) if e.kind == ErrorKind::InvalidBinary => {
                raise_as(PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION, e)
            }
            Err(e) => raise(e),
        }
    }
}

/// Raise a 22023 error with a hint.
pub fn invalid_parameter(message: impl Into<String>, hint: Option<&str>) -> ! {
    let mut e = CoreError::invalid_parameter(message);
    if let Some(h) = hint {
        e = e.with_hint(h);
    }
    raise(e)
}

/// Raise the 22004 of a NULL count given to an add function (`cms_add`, `topk_add`, the
/// weighted `cms_add_agg`): one rule everywhere, as `gcounter_increment` and
/// `counter_add` have it.
pub fn null_count(function: &str) -> ! {
    raise_as(
        PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
        CoreError::invalid_parameter(format!("{function}: the count must not be NULL"))
            .with_hint("Pass a count >= 0, or leave it out to count 1."),
    )
}
