//! The function-declaring macros (exported at the crate root).

/// `pg_finfo_<name>`: declares `<name>` a version-1 function (for the macros below).
#[doc(hidden)]
#[macro_export]
macro_rules! __dc_finfo {
    ($name:ident) => {
        ::paste::paste! {
            #[unsafe(no_mangle)]
            #[doc(hidden)]
            pub extern "C" fn [<pg_finfo_ $name>]() -> &'static ::pgrx::pg_sys::Pg_finfo_record {
                const V1: ::pgrx::pg_sys::Pg_finfo_record = ::pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
                &V1
            }
        }
    };
}

/// Declare a version-1 SQL-callable function: emits `pg_finfo_<name>` and a
/// panic-guarded `extern "C-unwind"` entry point.
#[macro_export]
macro_rules! sql_function {
    ($(#[$meta:meta])* fn $name:ident($fcinfo:ident) $body:block) => {
        $crate::__dc_finfo!($name);
        $(#[$meta])*
        ///
        /// # Safety
        /// Called by PostgreSQL's fmgr only, with the FunctionCallInfo of a call that
        /// matches this function's declaration in sql/.
        #[unsafe(no_mangle)]
        pub unsafe extern "C-unwind" fn $name($fcinfo: ::pgrx::pg_sys::FunctionCallInfo) -> ::pgrx::pg_sys::Datum {
            #[allow(unused_unsafe)]
            unsafe {
                ::pgrx::pg_sys::submodules::panic::pgrx_extern_c_guard(move || $body)
            }
        }
    };
}

/// Like [`sql_function!`], with a `fast` block that runs first, outside the panic
/// guard, for an aggregate's per-row path: the guard's call and result copy cost about
/// as much as the work of a row. The fast block returns `Some(datum)` when it handled
/// the call and `None` to fall through to the guarded `slow` block. It must make no
/// `pg_sys` call (an ERROR's longjmp would cross Rust frames) and must not be able to
/// panic: plain integer arithmetic that cannot overflow, slice `get`/`get_mut`, and the
/// inline header checks of this module only.
// The blocks are unsafe code by design (raw fcinfo access), like sql_function!'s body.
#[macro_export]
macro_rules! sql_function_with_fast_path {
    ($(#[$meta:meta])* fn $name:ident($fcinfo:ident) fast $fast:block slow $slow:block) => {
        $crate::__dc_finfo!($name);
        $(#[$meta])*
        ///
        /// # Safety
        /// Called by PostgreSQL's fmgr only, with the FunctionCallInfo of a call that
        /// matches this function's declaration in sql/.
        #[unsafe(no_mangle)]
        #[allow(clippy::macro_metavars_in_unsafe)]
        pub unsafe extern "C-unwind" fn $name($fcinfo: ::pgrx::pg_sys::FunctionCallInfo) -> ::pgrx::pg_sys::Datum {
            #[allow(unused_unsafe)]
            let fast: Option<::pgrx::pg_sys::Datum> = unsafe { $fast };
            if let Some(datum) = fast {
                return datum;
            }
            #[allow(unused_unsafe)]
            unsafe {
                ::pgrx::pg_sys::submodules::panic::pgrx_extern_c_guard(move || $slow)
            }
        }
    };
}

/// A SQL-callable function with no panic guard at all ("unguarded"), for tiny per-row functions
/// (the integer hash functions) under the rules of `sql_function_with_fast_path!`'s
/// fast block: no `pg_sys` call, nothing that can panic.
// The blocks are unsafe code by design (raw fcinfo access), like sql_function!'s body.
#[macro_export]
macro_rules! unguarded_sql_function {
    ($(#[$meta:meta])* fn $name:ident($fcinfo:ident) $body:block) => {
        $crate::__dc_finfo!($name);
        $(#[$meta])*
        ///
        /// # Safety
        /// Called by PostgreSQL's fmgr only, with the FunctionCallInfo of a call that
        /// matches this function's declaration in sql/.
        #[unsafe(no_mangle)]
        #[allow(clippy::macro_metavars_in_unsafe)]
        pub unsafe extern "C" fn $name($fcinfo: ::pgrx::pg_sys::FunctionCallInfo) -> ::pgrx::pg_sys::Datum {
            #[allow(unused_unsafe)]
            unsafe { $body }
        }
    };
}
