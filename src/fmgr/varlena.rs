//! Varlena values: inline header checks, payload views, and building new values.

use pgrx::pg_sys;

/// Plain in-memory value with a 4-byte header (not compressed, not external, not short).
///
/// # Safety
/// Every pointer or datum given is a valid, non-NULL varlena (or cstring, or StringInfo, as named) that lives at least as long as the returned slice; allocating functions run inside a PostgreSQL memory context.
#[inline(always)]
pub unsafe fn is_plain_4b(ptr: *const u8) -> bool {
    unsafe { (*ptr & 0x03) == 0x00 }
}

/// Payload (after the header) of a plain 4-byte-header varlena.
///
/// # Safety
/// Every pointer or datum given is a valid, non-NULL varlena (or cstring, or StringInfo, as named) that lives at least as long as the returned slice; allocating functions run inside a PostgreSQL memory context.
#[inline(always)]
pub unsafe fn plain_4b_payload<'a>(ptr: *mut u8) -> &'a mut [u8] {
    unsafe {
        let header = u32::from_le_bytes([*ptr, *ptr.add(1), *ptr.add(2), *ptr.add(3)]);
        let total = (header >> 2) as usize;
        std::slice::from_raw_parts_mut(ptr.add(4), total.saturating_sub(4))
    }
}

/// Read-only view of a varlena datum's payload, detoasting/decompressing only when
/// needed (short 1-byte headers are read in place). The returned slice lives in the
/// current memory context or in the datum itself.
///
/// # Safety
/// Every pointer or datum given is a valid, non-NULL varlena (or cstring, or StringInfo, as named) that lives at least as long as the returned slice; allocating functions run inside a PostgreSQL memory context.
#[inline(always)]
pub unsafe fn varlena_bytes<'a>(datum: pg_sys::Datum) -> &'a [u8] {
    unsafe {
        let ptr = datum.cast_mut_ptr::<u8>();
        let first = *ptr;
        if first & 0x03 == 0x00 {
            return plain_4b_payload(ptr);
        }
        if first & 0x01 == 0x01 && first != 0x01 {
            // short header: size in the upper 7 bits, includes the header byte
            let total = ((first >> 1) & 0x7F) as usize;
            return std::slice::from_raw_parts(ptr.add(1), total.saturating_sub(1));
        }
        // compressed or external (TOAST pointer): let PostgreSQL fetch/decompress it
        let detoasted = pg_sys::pg_detoast_datum_packed(ptr as *mut pg_sys::varlena) as *mut u8;
        varlena_bytes(pg_sys::Datum::from(detoasted))
    }
}

/// A private, writable 4-byte-header copy of a varlena datum's payload (detoasted).
///
/// # Safety
/// Every pointer or datum given is a valid, non-NULL varlena (or cstring, or StringInfo, as named) that lives at least as long as the returned slice; allocating functions run inside a PostgreSQL memory context.
pub unsafe fn varlena_copy(datum: pg_sys::Datum) -> *mut u8 {
    unsafe {
        let bytes = varlena_bytes(datum);
        bytes_to_varlena(bytes)
    }
}

/// palloc a new varlena in the current memory context holding `bytes`.
///
/// # Safety
/// Every pointer or datum given is a valid, non-NULL varlena (or cstring, or StringInfo, as named) that lives at least as long as the returned slice; allocating functions run inside a PostgreSQL memory context.
pub unsafe fn bytes_to_varlena(bytes: &[u8]) -> *mut u8 {
    unsafe {
        let ptr = alloc_varlena(bytes.len());
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.add(4), bytes.len());
        ptr
    }
}

/// palloc a varlena with a payload of `len` bytes (uninitialised payload).
///
/// # Safety
/// Every pointer or datum given is a valid, non-NULL varlena (or cstring, or StringInfo, as named) that lives at least as long as the returned slice; allocating functions run inside a PostgreSQL memory context.
pub unsafe fn alloc_varlena(len: usize) -> *mut u8 {
    unsafe {
        let total = len + 4;
        if total > 0x3FFF_FFFF {
            crate::error::invalid_parameter(
                format!("value of {total} bytes exceeds the 1 GB varlena limit"),
                None,
            );
        }
        let ptr = pg_sys::palloc(total) as *mut u8;
        let header = (total as u32) << 2;
        std::ptr::copy_nonoverlapping(header.to_le_bytes().as_ptr(), ptr, 4);
        ptr
    }
}

#[inline(always)]
pub fn ptr_datum(ptr: *mut u8) -> pg_sys::Datum {
    pg_sys::Datum::from(ptr)
}

/// A `text` datum from a Rust string (palloc'd in the current context).
///
/// # Safety
/// Every pointer or datum given is a valid, non-NULL varlena (or cstring, or StringInfo, as named) that lives at least as long as the returned slice; allocating functions run inside a PostgreSQL memory context.
pub unsafe fn text_datum(s: &str) -> pg_sys::Datum {
    unsafe { ptr_datum(bytes_to_varlena(s.as_bytes())) }
}

/// A `cstring` datum (palloc'd, NUL-terminated).
///
/// # Safety
/// Every pointer or datum given is a valid, non-NULL varlena (or cstring, or StringInfo, as named) that lives at least as long as the returned slice; allocating functions run inside a PostgreSQL memory context.
pub unsafe fn cstring_datum(s: &str) -> pg_sys::Datum {
    unsafe {
        let ptr = pg_sys::palloc(s.len() + 1) as *mut u8;
        std::ptr::copy_nonoverlapping(s.as_ptr(), ptr, s.len());
        *ptr.add(s.len()) = 0;
        pg_sys::Datum::from(ptr)
    }
}

/// Read a `cstring` argument.
///
/// # Safety
/// Every pointer or datum given is a valid, non-NULL varlena (or cstring, or StringInfo, as named) that lives at least as long as the returned slice; allocating functions run inside a PostgreSQL memory context.
pub unsafe fn cstring_arg<'a>(datum: pg_sys::Datum) -> &'a [u8] {
    unsafe { std::ffi::CStr::from_ptr(datum.cast_mut_ptr::<std::ffi::c_char>()).to_bytes() }
}

/// Read the remaining bytes of a `internal` StringInfo argument (binary recv) and
/// mark them consumed.
///
/// # Safety
/// Every pointer or datum given is a valid, non-NULL varlena (or cstring, or StringInfo, as named) that lives at least as long as the returned slice; allocating functions run inside a PostgreSQL memory context.
pub unsafe fn recv_bytes<'a>(datum: pg_sys::Datum) -> &'a [u8] {
    unsafe {
        let buf = datum.cast_mut_ptr::<pg_sys::StringInfoData>();
        let start = (*buf).cursor as usize;
        let len = ((*buf).len as usize).saturating_sub(start);
        let bytes = std::slice::from_raw_parts(((*buf).data as *const u8).add(start), len);
        (*buf).cursor = (*buf).len;
        bytes
    }
}

/// A `bytea` datum for a send function (identical layout to our varlena types).
///
/// # Safety
/// Every pointer or datum given is a valid, non-NULL varlena (or cstring, or StringInfo, as named) that lives at least as long as the returned slice; allocating functions run inside a PostgreSQL memory context.
pub unsafe fn bytea_datum(bytes: &[u8]) -> pg_sys::Datum {
    unsafe { ptr_datum(bytes_to_varlena(bytes)) }
}
