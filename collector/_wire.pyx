# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""A compiled reader of OTLP trace exports, straight from the protobuf wire format.

The pure-Python path (``collector.otlp``) lets upb parse and then walks the
message objects attribute by attribute; at ~20 attributes and a 200-entry
block-hash array per span that walk, not the parse, is what limits ingest.
This reader goes over the bytes once and builds the same records: strings
decoded strictly as UTF-8, int-only arrays as numpy int64 arrays, bytes as
hex, unknown fields skipped. AnyValues nest at most ``max_depth`` levels of
arrays and key-value lists (every recursion here is bounded by it, so no input
can exhaust the C stack). Anything it cannot read raises ``WireError`` and the
caller falls back to upb, which says what was wrong.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy

import numpy as np

API = 2  # collector.otlp.WIRE_API: bumped whenever decode_traces changes its contract


class WireError(ValueError):
    """The bytes are not a well-formed export this reader handles."""


cdef uint64_t _varint(const unsigned char* b, Py_ssize_t* pos, Py_ssize_t end) except? 0:
    cdef uint64_t result = 0
    cdef int shift = 0
    cdef unsigned char byte
    while True:
        if pos[0] >= end or shift > 63:
            raise WireError("truncated or overlong varint")
        byte = b[pos[0]]
        pos[0] += 1
        result |= (<uint64_t>(byte & 0x7F)) << shift
        if byte < 0x80:
            return result
        shift += 7


cdef Py_ssize_t _length(const unsigned char* b, Py_ssize_t* pos, Py_ssize_t end) except -1:
    cdef uint64_t n = _varint(b, pos, end)
    if n > <uint64_t>(end - pos[0]):
        raise WireError("length-delimited field runs past its message")
    return <Py_ssize_t>n


cdef uint64_t _fixed64(const unsigned char* b, Py_ssize_t* pos, Py_ssize_t end) except? 0:
    cdef uint64_t out = 0
    cdef int i
    if end - pos[0] < 8:
        raise WireError("truncated fixed64")
    for i in range(8):
        out |= (<uint64_t>b[pos[0] + i]) << (8 * i)
    pos[0] += 8
    return out


cdef int _skip(const unsigned char* b, Py_ssize_t* pos, Py_ssize_t end, int wire) except -1:
    if wire == 0:
        _varint(b, pos, end)
    elif wire == 1:
        _fixed64(b, pos, end)
    elif wire == 2:
        pos[0] += _length(b, pos, end)
    elif wire == 5:
        if end - pos[0] < 4:
            raise WireError("truncated fixed32")
        pos[0] += 4
    else:
        raise WireError(f"unsupported wire type {wire}")
    return 0


cdef str _text(const unsigned char* b, Py_ssize_t start, Py_ssize_t n):
    return PyUnicode_DecodeUTF8(<const char*>b + start, n, NULL)


cdef bytes _bytes(const unsigned char* b, Py_ssize_t start, Py_ssize_t n):
    return PyBytes_FromStringAndSize(<const char*>b + start, n)


cdef object _int_array(const unsigned char* b, Py_ssize_t start, Py_ssize_t end):
    """An ArrayValue of int AnyValues only, as an int64 numpy array; None otherwise."""
    cdef Py_ssize_t pos = start, n, inner, count = 0
    while pos < end:  # first pass: check the shape and count
        if b[pos] != 0x0A:
            return None
        pos += 1
        n = _length(b, &pos, end)
        if n < 2 or b[pos] != 0x18:
            return None
        inner = pos + 1
        _varint(b, &inner, pos + n)
        if inner != pos + n:
            return None
        pos += n
        count += 1
    out = PyBytes_FromStringAndSize(NULL, 8 * count)
    cdef char* dest = PyBytes_AS_STRING(out)
    cdef int64_t value
    pos, count = start, 0
    while pos < end:
        pos += 1
        n = _length(b, &pos, end)
        inner = pos + 1
        value = <int64_t>_varint(b, &inner, pos + n)
        memcpy(dest + 8 * count, &value, 8)
        pos += n
        count += 1
    return np.frombuffer(out, dtype=np.int64)


cdef int _deeper(int left) except -1:
    """Levels of nesting left below this one; raises past the limit."""
    if left <= 0:
        raise WireError("AnyValue nested too deep")
    return left - 1


cdef object _any(
    const unsigned char* b, Py_ssize_t start, Py_ssize_t end, bint arrays, int left
):
    """One AnyValue; with ``arrays``, int-only arrays come out as numpy arrays.
    ``left``: levels of array/kvlist nesting still allowed below it."""
    cdef Py_ssize_t pos = start, n
    cdef uint64_t tag, raw
    cdef double real
    cdef object out = None
    while pos < end:
        tag = _varint(b, &pos, end)
        if tag == 0x0A:  # 1 string_value
            n = _length(b, &pos, end)
            out = _text(b, pos, n)
            pos += n
        elif tag == 0x10:  # 2 bool_value
            out = _varint(b, &pos, end) != 0
        elif tag == 0x18:  # 3 int_value
            out = <int64_t>_varint(b, &pos, end)
        elif tag == 0x21:  # 4 double_value
            raw = _fixed64(b, &pos, end)
            memcpy(&real, &raw, 8)
            out = real
        elif tag == 0x2A:  # 5 array_value
            n = _length(b, &pos, end)
            out = _int_array(b, pos, pos + n) if arrays else None
            if out is None:
                out = _values(b, pos, pos + n, _deeper(left))
            pos += n
        elif tag == 0x32:  # 6 kvlist_value
            n = _length(b, &pos, end)
            out = {}
            _key_values(b, pos, pos + n, 0x0A, out, False, _deeper(left))
            pos += n
        elif tag == 0x3A:  # 7 bytes_value
            n = _length(b, &pos, end)
            out = _bytes(b, pos, n).hex()
            pos += n
        else:
            _skip(b, &pos, end, tag & 7)
    return out


cdef list _values(const unsigned char* b, Py_ssize_t start, Py_ssize_t end, int left):
    cdef Py_ssize_t pos = start, n
    cdef uint64_t tag
    cdef list out = []
    while pos < end:
        tag = _varint(b, &pos, end)
        if tag == 0x0A:
            n = _length(b, &pos, end)
            out.append(_any(b, pos, pos + n, False, left))
            pos += n
        else:
            _skip(b, &pos, end, tag & 7)
    return out


cdef int _key_value(
    const unsigned char* b, Py_ssize_t start, Py_ssize_t end, dict out, bint arrays, int left
) except -1:
    cdef Py_ssize_t pos = start, n
    cdef uint64_t tag
    cdef str key = ""
    cdef object value = None
    while pos < end:
        tag = _varint(b, &pos, end)
        if tag == 0x0A:
            n = _length(b, &pos, end)
            key = _text(b, pos, n)
            pos += n
        elif tag == 0x12:
            n = _length(b, &pos, end)
            value = _any(b, pos, pos + n, arrays, left)
            pos += n
        else:
            _skip(b, &pos, end, tag & 7)
    out[key] = value
    return 0


cdef int _key_values(
    const unsigned char* b,
    Py_ssize_t start,
    Py_ssize_t end,
    uint64_t want,
    dict out,
    bint arrays,
    int left,
) except -1:
    """Every KeyValue under tag ``want`` of one message, into ``out``."""
    cdef Py_ssize_t pos = start, n
    cdef uint64_t tag
    while pos < end:
        tag = _varint(b, &pos, end)
        if tag == want:
            n = _length(b, &pos, end)
            _key_value(b, pos, pos + n, out, arrays, left)
            pos += n
        else:
            _skip(b, &pos, end, tag & 7)
    return 0


cdef tuple _event(const unsigned char* b, Py_ssize_t start, Py_ssize_t end):
    cdef Py_ssize_t pos = start, n
    cdef uint64_t tag, time_ns = 0
    cdef str name = ""
    while pos < end:
        tag = _varint(b, &pos, end)
        if tag == 0x09:
            time_ns = _fixed64(b, &pos, end)
        elif tag == 0x12:
            n = _length(b, &pos, end)
            name = _text(b, pos, n)
            pos += n
        else:
            _skip(b, &pos, end, tag & 7)
    return (name, time_ns)


cdef class _Out:
    cdef public list records
    cdef public int rejected
    cdef public str error
    cdef object factory
    cdef int max_depth

    def __init__(self, factory, int max_depth):
        self.records, self.rejected, self.error, self.factory = [], 0, "", factory
        self.max_depth = max_depth


cdef int _span(
    const unsigned char* b, Py_ssize_t start, Py_ssize_t end, dict resource, _Out out
) except -1:
    cdef Py_ssize_t pos = start, n, inner, stop
    cdef uint64_t tag, t
    cdef bytes trace_id = b"", span_id = b"", parent = b""
    cdef str name = "", status_message = ""
    cdef uint64_t kind = 0, start_ns = 0, end_ns = 0, status_code = 0
    cdef dict attributes = {}
    cdef list events = []
    while pos < end:
        tag = _varint(b, &pos, end)
        if tag == 0x0A or tag == 0x12 or tag == 0x22 or tag == 0x2A:
            n = _length(b, &pos, end)
            if tag == 0x0A:
                trace_id = _bytes(b, pos, n)
            elif tag == 0x12:
                span_id = _bytes(b, pos, n)
            elif tag == 0x22:
                parent = _bytes(b, pos, n)
            else:
                name = _text(b, pos, n)
            pos += n
        elif tag == 0x30:
            kind = _varint(b, &pos, end)
        elif tag == 0x39:
            start_ns = _fixed64(b, &pos, end)
        elif tag == 0x41:
            end_ns = _fixed64(b, &pos, end)
        elif tag == 0x4A:
            n = _length(b, &pos, end)
            _key_value(b, pos, pos + n, attributes, True, out.max_depth)
            pos += n
        elif tag == 0x5A:
            n = _length(b, &pos, end)
            events.append(_event(b, pos, pos + n))
            pos += n
        elif tag == 0x7A:  # status: 2 message, 3 code
            n = _length(b, &pos, end)
            inner, stop = pos, pos + n
            while inner < stop:
                t = _varint(b, &inner, stop)
                if t == 0x12:
                    n = _length(b, &inner, stop)
                    status_message = _text(b, inner, n)
                    inner += n
                elif t == 0x18:
                    status_code = _varint(b, &inner, stop)
                else:
                    _skip(b, &inner, stop, t & 7)
            pos = stop
        else:
            _skip(b, &pos, end, tag & 7)
    if len(trace_id) != 16 or len(span_id) != 8:
        out.rejected += 1
        out.error = "span with a trace_id not 16 bytes or span_id not 8 bytes"
        return 0
    out.records.append(
        out.factory(
            "span", trace_id.hex(), span_id.hex(), parent.hex(), name, <int>kind, start_ns,
            end_ns, <int>status_code, status_message, attributes, resource, events,
        )
    )
    return 0


cdef int _resource_spans(const unsigned char* b, Py_ssize_t start, Py_ssize_t end, _Out out) except -1:
    cdef Py_ssize_t pos = start, n, inner, stop
    cdef uint64_t tag, t
    cdef dict resource = {}
    while pos < end:  # the resource first, wherever it sits
        tag = _varint(b, &pos, end)
        if tag == 0x0A:
            n = _length(b, &pos, end)
            _key_values(b, pos, pos + n, 0x0A, resource, False, out.max_depth)
            pos += n
        else:
            _skip(b, &pos, end, tag & 7)
    pos = start
    while pos < end:
        tag = _varint(b, &pos, end)
        if tag == 0x12:  # scope_spans: 2 spans
            n = _length(b, &pos, end)
            inner, stop = pos, pos + n
            while inner < stop:
                t = _varint(b, &inner, stop)
                if t == 0x12:
                    n = _length(b, &inner, stop)
                    _span(b, inner, inner + n, resource, out)
                    inner += n
                else:
                    _skip(b, &inner, stop, t & 7)
            pos = stop
        else:
            _skip(b, &pos, end, tag & 7)
    return 0


def decode_traces(const unsigned char[::1] data not None, factory, int max_depth):
    """(records, rejected, error) of a serialized ExportTraceServiceRequest;
    ``factory`` builds a record from the span's fields; AnyValues nest at most
    ``max_depth`` levels of arrays and key-value lists."""
    cdef const unsigned char* b = &data[0] if data.shape[0] else NULL
    cdef Py_ssize_t pos = 0, end = data.shape[0], n
    cdef uint64_t tag
    cdef _Out out = _Out(factory, max_depth)
    while pos < end:
        tag = _varint(b, &pos, end)
        if tag == 0x0A:
            n = _length(b, &pos, end)
            _resource_spans(b, pos, pos + n, out)
            pos += n
        else:
            _skip(b, &pos, end, tag & 7)
    return out.records, out.rejected, out.error
