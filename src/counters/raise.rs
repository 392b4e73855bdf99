//! `_counter_raise`: how the counter functions report their errors as one clear message.
//!
//! The counter API is PL/pgSQL (sql/counters.sql). A `RAISE` there reaches the client
//! with one CONTEXT line per PL/pgSQL frame and per SQL statement between them
//! ("PL/pgSQL function _counter_missing(text) line 4 at RAISE", "SQL statement "SELECT
//! ..."", "PL/pgSQL function counter_value(text,text) line 9 at PERFORM"): five to seven
//! lines that describe the extension's internals, not the user's statement. The
//! functions raise through `_counter_raise` instead, which drops exactly those frames:
//! every error-context frame above the outermost PL/pgSQL frame of a function that is a
//! member of the extension (pg_depend; not its schema, which may be `public`). Frames below it (the user's own PL/pgSQL function that called
//! `counter_add`, a trigger, ...) stay, so the user still sees where in their code the
//! call failed.
//!
//! Dropping frames is safe: `error_context_stack` is only read by `errfinish` to build
//! the CONTEXT text, and every `PG_TRY` (PL/pgSQL exception blocks, SPI, pgrx's guards)
//! and the top-level error recovery restore their own saved value.
//!
//! Which frames are PL/pgSQL's: those whose callback is PL/pgSQL's executor's
//! (`plpgsql_exec_error_callback`, whose argument is the `PLpgSQL_execstate`). That
//! function is static in plpgsql.so, so its address is learnt once per backend from a
//! probe: `_counter_plpgsql_probe()` (PL/pgSQL) calls `_counter_note_plpgsql_frame()` in
//! an assignment, a simple expression evaluated with no frame of its own, so the top
//! frame is then the executor's (and its callback must lie in plpgsql.so, `dladdr`).
//! Only frames with exactly that callback are read; PL/pgSQL's other callbacks (the
//! compiler's, whose arguments are other things) never are. From the execstate, its
//! first field is the `PLpgSQL_function`, which starts with `fn_signature` and `fn_oid`
//! (PostgreSQL 15) or with funccache.c's `CachedFunction` and then those two
//! (PostgreSQL 18).

use crate::fmgr::arg;
use pgrx::pg_sys;
use std::ffi::CStr;

/// The start of plpgsql.h's `PLpgSQL_function`, up to `fn_oid`.
#[repr(C)]
struct PlpgsqlFunctionHead {
    #[cfg(feature = "pg18")]
    _cfunc: pg_sys::CachedFunction,
    _fn_signature: *mut std::ffi::c_char,
    fn_oid: pg_sys::Oid,
}

/// The start of plpgsql.h's `PLpgSQL_execstate`.
#[repr(C)]
struct PlpgsqlExecstateHead {
    func: *const PlpgsqlFunctionHead,
}

/// Does `callback` live in the plpgsql library?
fn in_plpgsql(callback: *const std::ffi::c_void) -> bool {
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    // SAFETY: dladdr only reads the loader's tables; `info` is a valid out pointer.
    if unsafe { libc::dladdr(callback, &mut info) } == 0 || info.dli_fname.is_null() {
        return false;
    }
    // SAFETY: dladdr returned a NUL-terminated path owned by the loader.
    let path = unsafe { CStr::from_ptr(info.dli_fname) }.to_bytes();
    let file = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    file.starts_with(b"plpgsql.")
}

thread_local! {
    /// The address of PL/pgSQL's executor callback, once the probe has seen it.
    static EXEC_CALLBACK: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

crate::sql_function! {
    /// _counter_note_plpgsql_frame() -> bool: notes the callback of the frame on top of
    /// the stack as PL/pgSQL's executor's, when `_counter_plpgsql_probe()` calls it (and
    /// the callback lies in plpgsql.so); true when it did.
    fn dc_counter_note_plpgsql_frame(fcinfo) {
        unsafe {
            let _ = fcinfo;
            let top = pg_sys::error_context_stack;
            let noted = match top.as_ref().and_then(|f| f.callback) {
                Some(cb) if in_plpgsql(cb as *const std::ffi::c_void) => {
                    EXEC_CALLBACK.set(Some(cb as usize));
                    true
                }
                _ => false,
            };
            crate::fmgr::datum_bool(noted)
        }
    }
}

/// PL/pgSQL's executor callback, learnt from `<schema>._counter_plpgsql_probe()` the
/// first time (None when the probe is missing or saw something else).
unsafe fn exec_callback(schema: pg_sys::Oid) -> Option<usize> {
    unsafe {
        if let Some(cb) = EXEC_CALLBACK.get() {
            return Some(cb);
        }
        let names = pg_sys::lappend(
            pg_sys::lappend(
                std::ptr::null_mut(),
                pg_sys::makeString(pg_sys::get_namespace_name(schema)).cast(),
            ),
            pg_sys::makeString(c"_counter_plpgsql_probe".as_ptr().cast_mut()).cast(),
        );
        let probe = pg_sys::LookupFuncName(names, 0, std::ptr::null(), true);
        if probe == pg_sys::InvalidOid {
            return None;
        }
        pg_sys::OidFunctionCall0Coll(probe, pg_sys::InvalidOid);
        EXEC_CALLBACK.get()
    }
}

/// Drop the error-context frames of the extension's own PL/pgSQL functions (and the SPI
/// frames between them) from the top of the stack; see the module comment.
///
/// # Safety
/// Called from a function's body, in a backend, before raising an error.
unsafe fn drop_own_frames(extension: pg_sys::Oid, schema: pg_sys::Oid) {
    unsafe {
        if pg_sys::get_namespace_name(schema).is_null() {
            return;
        }
        let Some(exec) = exec_callback(schema) else {
            return;
        };
        let mut new_top = None;
        let mut frame = pg_sys::error_context_stack;
        while !frame.is_null() {
            if let Some(cb) = (*frame).callback {
                if cb as usize == exec && !(*frame).arg.is_null() {
                    let estate = (*frame).arg as *const PlpgsqlExecstateHead;
                    let func = (*estate).func;
                    if !func.is_null()
                        && pg_sys::getExtensionOfObject(pg_sys::ProcedureRelationId, (*func).fn_oid)
                            == extension
                    {
                        new_top = Some((*frame).previous);
                    }
                }
            }
            frame = (*frame).previous;
        }
        if let Some(top) = new_top {
            pg_sys::error_context_stack = top;
        }
    }
}

/// `MAKE_SQLSTATE` of a five-character code, or None when it is not one.
fn sqlstate(code: &[u8]) -> Option<i32> {
    if code.len() != 5
        || !code
            .iter()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
    {
        return None;
    }
    Some(
        code.iter()
            .enumerate()
            .map(|(i, &c)| (((c - b'0') & 0x3F) as i32) << (6 * i))
            .sum(),
    )
}

unsafe fn text_arg(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<String> {
    unsafe {
        arg(fcinfo, n).map(|d| {
            let s = pg_sys::text_to_cstring(d.cast_mut_ptr());
            CStr::from_ptr(s).to_string_lossy().into_owned()
        })
    }
}

crate::sql_function! {
    /// _counter_raise(sqlstate text, message text, detail text, hint text) -> void:
    /// raise an ERROR without the extension's own CONTEXT lines.
    fn dc_counter_raise(fcinfo) {
        unsafe {
            let code = text_arg(fcinfo, 0)
                .and_then(|c| sqlstate(c.as_bytes()))
                .unwrap_or(pgrx::PgSqlErrorCode::ERRCODE_RAISE_EXCEPTION as i32);
            let message = text_arg(fcinfo, 1).unwrap_or_default();
            let mut report = pgrx::pg_sys::panic::ErrorReport::new(
                pgrx::PgSqlErrorCode::from(code),
                message,
                "distributed_counter",
            );
            if let Some(detail) = text_arg(fcinfo, 2) {
                report = report.set_detail(detail);
            }
            if let Some(hint) = text_arg(fcinfo, 3) {
                report = report.set_hint(hint);
            }
            let fn_oid = (*(*fcinfo).flinfo).fn_oid;
            let own = pg_sys::getExtensionOfObject(pg_sys::ProcedureRelationId, fn_oid);
            if own != pg_sys::InvalidOid {
                drop_own_frames(own, pg_sys::get_func_namespace(fn_oid));
            }
            report.report(pgrx::PgLogLevel::ERROR);
            unreachable!("ERROR does not return")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sqlstate;

    #[test]
    fn sqlstate_codes() {
        assert_eq!(
            sqlstate(b"22004"),
            Some(pgrx::PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED as i32)
        );
        assert_eq!(
            sqlstate(b"42704"),
            Some(pgrx::PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT as i32)
        );
        assert_eq!(sqlstate(b"2200"), None);
        assert_eq!(sqlstate(b"22o04"), None);
    }
}
