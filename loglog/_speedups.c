/* loglog's hot path in C: the level methods of Logger and the DEBUG/INFO half of emit.
 *
 * Why C: in CPython a log call that only queues a tuple still costs two Python frames, a
 * keyword dict and about forty bytecodes (~0.6 µs here, 2.3× the instructions of a bare
 * method call that appends to a deque). This module does the same work without a frame:
 * the method reads the threshold from a C struct, and a DEBUG/INFO record is queued with
 * C calls only. Everything else — WARNING+ (the crash spool), explicit timestamps,
 * exception info, unusual arguments — is handed to the Python closure that
 * ``loglog.core.make_emit`` builds, which also runs everything when this module is
 * missing (no compiler) or disabled (``LOGLOG_PURE_PYTHON=1``).
 *
 * The rules of the Python hot path hold here too:
 *  - never block: no lock, no blocking system call (the wake-up write is non-blocking);
 *  - never raise an Exception: any failure is counted as an internal error and the call
 *    returns None. A BaseException that is not an Exception (KeyboardInterrupt raised by
 *    a signal handler that ran inside Fmt's constructor, say) propagates, as in Python;
 *  - re-entrant: Python code can run in the middle — a finalizer or gc callback run by
 *    an allocation that starts a collection, Fmt's constructor, a Python context getter —
 *    and that code may log, reconfigure, or rebind the logger's name and fields; so every
 *    object used is held by a strong reference from the moment it is read (a red-team
 *    review found the first version reading name and bound borrowed: a use-after-free).
 *    Such code may also release the GIL and let other threads run.
 * The level methods read the logger's name, bound fields and core from the C struct: a
 * subclass that overrides them with properties is not consulted (Logger itself does not).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <fcntl.h>
#include <limits.h>
#include <time.h>
#include <unistd.h>

/* What loglog/core.py expects; bumped with every change to the Python-visible interface,
 * so that a stale build (sources updated, extension not rebuilt) is never used. */
#define API 5
#define WARNING 30
#define MAX_LEVEL 100
/* Layout of the raw record tuple (loglog.core: SEQ … SLOT). */
#define RECORD_SIZE 11

static PyObject *fmt_class = NULL;  /* loglog.core.Fmt, set by set_fmt() */
/* loglog.plain.exact_name and exact_bound, set by set_normalisers(): the unusual cases of
 * a logger's name and bound fields (the exact ones are handled here). */
static PyObject *exact_name_fn = NULL;
static PyObject *exact_bound_fn = NULL;
static PyObject *empty_text = NULL; /* "" */
static PyObject *minus_one = NULL;  /* -1: "no spool slot" */

/* -- Core: the state every Logger reads (threshold, emit, pipeline) ------------------ */

typedef struct {
    PyObject_HEAD
    long threshold;
    PyObject *emit;
    PyObject *pipeline;
} CoreObject;

static int
core_traverse(CoreObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->emit);
    Py_VISIT(self->pipeline);
    return 0;
}

static int
core_clear(CoreObject *self)
{
    Py_CLEAR(self->emit);
    Py_CLEAR(self->pipeline);
    return 0;
}

static void
core_dealloc(CoreObject *self)
{
    PyObject_GC_UnTrack(self);
    core_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
core_init(CoreObject *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, ":Core", names)) {
        return -1;
    }
    self->threshold = 20;
    Py_XSETREF(self->emit, Py_NewRef(Py_None));
    Py_XSETREF(self->pipeline, Py_NewRef(Py_None));
    return 0;
}

/* threshold accepts any int, clamped to a C long (a huge level simply disables every
 * level); anything else is a TypeError, and it cannot be deleted. */
static PyObject *
core_get_threshold(CoreObject *self, void *closure)
{
    return PyLong_FromLong(self->threshold);
}

static int
core_set_threshold(CoreObject *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "Core.threshold cannot be deleted");
        return -1;
    }
    if (!PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError, "Core.threshold must be an int, not %.100s",
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    int overflow = 0;
    long threshold = PyLong_AsLongAndOverflow(value, &overflow);
    if (threshold == -1 && PyErr_Occurred()) {
        return -1;
    }
    self->threshold = overflow > 0 ? LONG_MAX : overflow < 0 ? LONG_MIN : threshold;
    return 0;
}

static PyGetSetDef core_getset[] = {
    {"threshold", (getter)core_get_threshold, (setter)core_set_threshold,
     "Records below this level are not queued.", NULL},
    {NULL},
};

static PyMemberDef core_members[] = {
    {"emit", T_OBJECT, offsetof(CoreObject, emit), 0,
     "emit(level, name, msg, fields, bound, exc=None, time_ns=0)"},
    {"pipeline", T_OBJECT, offsetof(CoreObject, pipeline), 0, "The running Pipeline or None."},
    {NULL},
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "loglog._speedups.Core",
    .tp_doc = PyDoc_STR("State shared by every Logger; configure() mutates it in place."),
    .tp_basicsize = sizeof(CoreObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)core_init,
    .tp_dealloc = (destructor)core_dealloc,
    .tp_traverse = (traverseproc)core_traverse,
    .tp_clear = (inquiry)core_clear,
    .tp_members = core_members,
    .tp_getset = core_getset,
};

/* -- Emitter: the emit callable, DEBUG/INFO in C ------------------------------------ */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *high;            /* the Python emit closure: every call C does not take */
    PyObject *low;             /* the DEBUG/INFO deque */
    PyObject *low_append;      /* low.append */
    Py_ssize_t low_capacity;
    Py_ssize_t half;
    PyObject *seq;             /* itertools.count: the sequence number */
    PyObject *emitted;         /* tuple of itertools.count, one per level 0..MAX_LEVEL */
    PyObject *full;            /* likewise: dropped because the queue was full */
    PyObject *internal_errors; /* itertools.count */
    PyObject *context_get;     /* returns the OpenTelemetry context (or None) */
    int wake_fd;               /* the worker's non-blocking wake-up pipe */
    PyObject *idle;            /* list [bool]: the worker sleeps long */
} EmitterObject;

static PyTypeObject EmitterType;

/* One step of an itertools.count: 0 on success, -1 with an exception set. */
static inline int
bump(PyObject *counter)
{
    PyObject *value = Py_TYPE(counter)->tp_iternext(counter);
    if (value == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_RuntimeError, "counter exhausted");
        }
        return -1;
    }
    Py_DECREF(value);
    return 0;
}

/* Swallow an Exception (counted), let any other BaseException through. */
static PyObject *
failed(EmitterObject *e)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        return NULL;
    }
    PyErr_Clear();
    if (e != NULL && bump(e->internal_errors) < 0) {
        PyErr_Clear();
    }
    Py_RETURN_NONE;
}

static inline void
wake(int fd)
{
    /* Non-blocking pipe: a full pipe means the worker is already due to wake. */
    ssize_t ignored = write(fd, "", 1);
    (void)ignored;
}

static PyObject *
now_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLongLong((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
}

/* The calling thread's id as an int (a new reference). The last one is kept: a thread
 * that logs in a loop gets the same object back instead of a new int per record. The
 * cache is only read and written with the GIL held, by C code that runs no Python. */
static unsigned long cached_ident = 0;
static PyObject *cached_ident_object = NULL;

static PyObject *
thread_ident(void)
{
    unsigned long ident = PyThread_get_thread_ident();
    if (cached_ident_object == NULL || ident != cached_ident) {
        PyObject *object = PyLong_FromUnsignedLong(ident);
        if (object == NULL) {
            return NULL;
        }
        Py_XSETREF(cached_ident_object, object);
        cached_ident = ident;
    }
    return Py_NewRef(cached_ident_object);
}

/* Queue one DEBUG/INFO record (0 <= level < WARNING). ``stamp`` may be NULL (now).
 * Returns None, or NULL with a BaseException that must propagate. */
static PyObject *
emit_low(EmitterObject *e, Py_ssize_t level, PyObject *level_object, PyObject *name,
         PyObject *msg, PyObject *fields, PyObject *bound, PyObject *stamp)
{
    if (bump(PyTuple_GET_ITEM(e->emitted, level)) < 0) {
        return failed(e);
    }
    Py_ssize_t size = PyObject_Size(e->low);
    if (size < 0) {
        return failed(e);
    }
    if (size >= e->low_capacity) {
        if (bump(PyTuple_GET_ITEM(e->full, level)) < 0) {
            return failed(e);
        }
        Py_RETURN_NONE;
    }
    /* Everything that can run Python code (the context getter, a finalizer an allocation
     * triggers) runs before the record tuple exists: a GC-tracked tuple with NULL slots
     * must never be reachable from gc.get_objects() (a gc callback touching it crashes). */
    PyObject *when = NULL, *context = NULL, *ident = NULL; /* the Python path's order */
    PyObject *seq = Py_TYPE(e->seq)->tp_iternext(e->seq);
    if (seq == NULL) {
        goto error;
    }
    when = stamp != NULL ? Py_NewRef(stamp) : now_ns();
    if (when == NULL) {
        goto error;
    }
    context = PyObject_CallNoArgs(e->context_get);
    if (context == NULL) {
        goto error;
    }
    ident = thread_ident();
    if (ident == NULL) {
        goto error;
    }
    PyObject *record = PyTuple_New(RECORD_SIZE);
    if (record == NULL) {
        goto error;
    }
    PyTuple_SET_ITEM(record, 0, seq);
    PyTuple_SET_ITEM(record, 1, when);
    PyTuple_SET_ITEM(record, 2, Py_NewRef(level_object));
    PyTuple_SET_ITEM(record, 3, Py_NewRef(name));
    PyTuple_SET_ITEM(record, 4, Py_NewRef(msg));
    PyTuple_SET_ITEM(record, 5, Py_NewRef(fields));
    PyTuple_SET_ITEM(record, 6, Py_NewRef(bound));
    PyTuple_SET_ITEM(record, 7, context);
    PyTuple_SET_ITEM(record, 8, ident);
    PyTuple_SET_ITEM(record, 9, Py_NewRef(Py_None));
    PyTuple_SET_ITEM(record, 10, Py_NewRef(minus_one));
    PyObject *appended = PyObject_CallOneArg(e->low_append, record);
    Py_DECREF(record);
    if (appended == NULL) {
        return failed(e);
    }
    Py_DECREF(appended);
    if (size == e->half) {
        wake(e->wake_fd); /* half full */
    }
    else if (size == 0) {
        /* The first record for an idle worker. The worker stores bools in idle[0]; any
         * other value is judged as Python would, and an emptied list is an error. */
        if (PyList_GET_SIZE(e->idle) == 0) {
            PyErr_SetString(PyExc_IndexError, "idle is empty");
            return failed(e);
        }
        PyObject *idle = Py_NewRef(PyList_GET_ITEM(e->idle, 0));
        int truth = idle == Py_True ? 1 : idle == Py_False ? 0 : PyObject_IsTrue(idle);
        Py_DECREF(idle);
        if (truth < 0) {
            return failed(e);
        }
        if (truth) {
            wake(e->wake_fd);
        }
    }
    Py_RETURN_NONE;
error:
    Py_XDECREF(seq);
    Py_XDECREF(when);
    Py_XDECREF(context);
    Py_XDECREF(ident);
    return failed(e);
}

/* The level when ``object`` is an exact int in 0 <= level < WARNING, else -1. */
static inline Py_ssize_t
low_level(PyObject *object)
{
    if (!PyLong_CheckExact(object)) {
        return -1;
    }
    int overflow = 0;
    long level = PyLong_AsLongAndOverflow(object, &overflow);
    if (overflow || level < 0 || level >= WARNING) {
        PyErr_Clear();
        return -1;
    }
    return (Py_ssize_t)level;
}

/* Whether every key of the exact dict ``dict`` is an exact str (no user code runs). */
static int
exact_keys(PyObject *dict)
{
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(dict, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key)) {
            return 0;
        }
    }
    return 1;
}

/* emit(level, name, msg, fields, bound, exc=None, time_ns=0). A dict of fields is queued
 * as it is (the stdlib bridge's): the worker makes its names exact before it merges it
 * (loglog/plain.py), as on the Python path. */
static PyObject *
emitter_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    EmitterObject *e = (EmitterObject *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames == NULL && nargs >= 5 && nargs <= 7 && PyDict_CheckExact(args[3]) &&
        (nargs < 6 || args[5] == Py_None)) {
        Py_ssize_t level = low_level(args[0]);
        PyObject *stamp = NULL;
        if (nargs == 7) {
            /* time_ns: 0 means now; anything but a positive exact int goes to Python. */
            if (!PyLong_CheckExact(args[6])) {
                level = -1;
            }
            else if (PyObject_IsTrue(args[6])) {
                stamp = args[6];
            }
        }
        if (level >= 0) {
            return emit_low(e, level, args[0], args[1], args[2], args[3], args[4], stamp);
        }
    }
    PyObject *result = PyObject_Vectorcall(e->high, args, nargsf, kwnames);
    if (result == NULL) {
        return NULL; /* the closure swallows every Exception: this one must propagate */
    }
    Py_DECREF(result);
    Py_RETURN_NONE;
}

static PyObject *
emitter_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"high", "low", "low_capacity", "seq", "emitted", "full",
                            "internal_errors", "context_get", "wake_fd", "idle", NULL};
    PyObject *high, *low, *seq, *emitted, *full, *internal_errors, *context_get, *idle;
    Py_ssize_t low_capacity;
    int wake_fd;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOnOO!O!OOiO!:Emitter", names, &high, &low,
                                     &low_capacity, &seq, &PyTuple_Type, &emitted,
                                     &PyTuple_Type, &full, &internal_errors, &context_get,
                                     &wake_fd, &PyList_Type, &idle)) {
        return NULL;
    }
    if (!PyCallable_Check(high) || !PyCallable_Check(context_get)) {
        PyErr_SetString(PyExc_TypeError, "Emitter: high and context_get must be callable");
        return NULL;
    }
    if (PyTuple_GET_SIZE(emitted) != MAX_LEVEL + 1 || PyTuple_GET_SIZE(full) != MAX_LEVEL + 1) {
        PyErr_SetString(PyExc_ValueError, "Emitter: one counter per level 0..100");
        return NULL;
    }
    PyObject *counters[] = {seq, internal_errors};
    for (int i = 0; i < 2; i++) {
        if (!PyIter_Check(counters[i])) {
            PyErr_SetString(PyExc_TypeError, "Emitter: counters must be itertools.count");
            return NULL;
        }
    }
    for (Py_ssize_t i = 0; i <= MAX_LEVEL; i++) {
        if (!PyIter_Check(PyTuple_GET_ITEM(emitted, i)) ||
            !PyIter_Check(PyTuple_GET_ITEM(full, i))) {
            PyErr_SetString(PyExc_TypeError, "Emitter: counters must be itertools.count");
            return NULL;
        }
    }
    int flags = fcntl(wake_fd, F_GETFL);
    if (flags < 0 || !(flags & O_NONBLOCK)) {
        PyErr_SetString(PyExc_ValueError,
                        "Emitter: wake_fd must be an open non-blocking descriptor (a log call "
                        "holds the GIL while it writes)");
        return NULL;
    }
    PyObject *low_append = PyObject_GetAttrString(low, "append");
    if (low_append == NULL) {
        return NULL;
    }
    EmitterObject *e = (EmitterObject *)type->tp_alloc(type, 0);
    if (e == NULL) {
        Py_DECREF(low_append);
        return NULL;
    }
    e->vectorcall = emitter_vectorcall;
    e->high = Py_NewRef(high);
    e->low = Py_NewRef(low);
    e->low_append = low_append;
    e->low_capacity = low_capacity;
    e->half = low_capacity / 2;
    e->seq = Py_NewRef(seq);
    e->emitted = Py_NewRef(emitted);
    e->full = Py_NewRef(full);
    e->internal_errors = Py_NewRef(internal_errors);
    e->context_get = Py_NewRef(context_get);
    e->wake_fd = wake_fd;
    e->idle = Py_NewRef(idle);
    return (PyObject *)e;
}

static int
emitter_traverse(EmitterObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->high);
    Py_VISIT(self->low);
    Py_VISIT(self->low_append);
    Py_VISIT(self->seq);
    Py_VISIT(self->emitted);
    Py_VISIT(self->full);
    Py_VISIT(self->internal_errors);
    Py_VISIT(self->context_get);
    Py_VISIT(self->idle);
    return 0;
}

static int
emitter_clear(EmitterObject *self)
{
    Py_CLEAR(self->high);
    Py_CLEAR(self->low);
    Py_CLEAR(self->low_append);
    Py_CLEAR(self->seq);
    Py_CLEAR(self->emitted);
    Py_CLEAR(self->full);
    Py_CLEAR(self->internal_errors);
    Py_CLEAR(self->context_get);
    Py_CLEAR(self->idle);
    return 0;
}

static void
emitter_dealloc(EmitterObject *self)
{
    PyObject_GC_UnTrack(self);
    emitter_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef emitter_members[] = {
    {"high", T_OBJECT, offsetof(EmitterObject, high), READONLY,
     "The Python emit that takes every call this one does not."},
    {NULL},
};

static PyTypeObject EmitterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "loglog._speedups.Emitter",
    .tp_doc = PyDoc_STR("emit(level, name, msg, fields, bound, exc=None, time_ns=0): "
                        "DEBUG/INFO queued in C, the rest handed to ``high``."),
    .tp_basicsize = sizeof(EmitterObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = emitter_new,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(EmitterObject, vectorcall),
    .tp_dealloc = (destructor)emitter_dealloc,
    .tp_traverse = (traverseproc)emitter_traverse,
    .tp_clear = (inquiry)emitter_clear,
    .tp_members = emitter_members,
};

/* -- LoggerBase: the level methods -------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *name;
    PyObject *bound;
    PyObject *core;
} LoggerObject;

/* A keyword name as an exact str (a new reference). CPython passes any str instance,
 * subclasses included; a subclass is copied (PyUnicode_FromObject copies the characters
 * and runs none of its methods), so no __hash__/__eq__ of it runs here or on the worker. */
static inline PyObject *
exact_keyword(PyObject *name)
{
    return PyUnicode_CheckExact(name) ? Py_NewRef(name) : PyUnicode_FromObject(name);
}

/* Fields from keyword arguments: a new dict of exact str keys (sinks may keep it). */
static PyObject *
fields_of(PyObject *const *values, PyObject *kwnames)
{
    PyObject *fields = PyDict_New();
    if (fields == NULL || kwnames == NULL) {
        return fields;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *key = exact_keyword(PyTuple_GET_ITEM(kwnames, i));
        if (key == NULL || PyDict_SetItem(fields, key, values[i]) < 0) {
            Py_XDECREF(key);
            Py_DECREF(fields);
            return NULL;
        }
        Py_DECREF(key);
    }
    return fields;
}

/* Fields for a record this module queues itself: a flat tuple (name, value, name, value…),
 * one allocation instead of a dict and its keys table; the worker builds the dict
 * (loglog.core.as_fields). No keyword arguments: the shared empty tuple. */
static PyObject *
flat_fields_of(PyObject *const *values, PyObject *kwnames)
{
    Py_ssize_t count = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    PyObject *flat = PyTuple_New(2 * count); /* () is a shared singleton */
    if (flat == NULL) {
        return NULL;
    }
    int subclassed = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        subclassed |= !PyUnicode_CheckExact(name); /* the one type check per name */
        PyTuple_SET_ITEM(flat, 2 * i, Py_NewRef(name));
        PyTuple_SET_ITEM(flat, 2 * i + 1, Py_NewRef(values[i]));
    }
    /* A str subclass is replaced by an exact copy (see exact_keyword). Only now, with every
     * slot set: the copy allocates, and a gc callback run by that allocation must not find
     * a half-built tuple (see emit_low). */
    for (Py_ssize_t i = 0; subclassed && i < count; i++) {
        PyObject *name = PyTuple_GET_ITEM(flat, 2 * i);
        if (!PyUnicode_CheckExact(name)) {
            PyObject *copy = PyUnicode_FromObject(name);
            if (copy == NULL) {
                Py_DECREF(flat);
                return NULL;
            }
            PyTuple_SET_ITEM(flat, 2 * i, copy);
            Py_DECREF(name); /* kwnames still holds it: no finalizer runs here */
        }
    }
    return flat;
}

/* msg, or Fmt(msg, args) when there are %-arguments. */
static PyObject *
message_of(PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *msg = nargs > 0 ? args[0] : empty_text;
    if (nargs <= 1) {
        return Py_NewRef(msg);
    }
    PyObject *rest = PyTuple_New(nargs - 1);
    if (rest == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 1; i < nargs; i++) {
        PyTuple_SET_ITEM(rest, i - 1, Py_NewRef(args[i]));
    }
    PyObject *call[2] = {msg, rest};
    PyObject *cls = fmt_class; /* held: its constructor could call set_fmt() */
    Py_XINCREF(cls);
    PyObject *formatted = cls != NULL ? PyObject_Vectorcall(cls, call, 2, NULL) : Py_NewRef(msg);
    Py_XDECREF(cls);
    Py_DECREF(rest);
    return formatted;
}

/* For a core that is not a CoreObject: its emit when ``level`` passes its threshold,
 * None when it does not, NULL with an exception set when either attribute is unusable. */
static PyObject *
enabled_emit(PyObject *core, Py_ssize_t level)
{
    PyObject *threshold = PyObject_GetAttrString(core, "threshold");
    if (threshold == NULL) {
        return NULL;
    }
    PyObject *level_object = PyLong_FromSsize_t(level);
    /* The Python path's test, operands in its order: ``core.threshold <= level``. */
    int enabled = level_object != NULL
                      ? PyObject_RichCompareBool(threshold, level_object, Py_LE)
                      : -1;
    Py_XDECREF(level_object);
    Py_DECREF(threshold);
    if (enabled < 0) {
        return NULL;
    }
    if (!enabled) {
        Py_RETURN_NONE;
    }
    return PyObject_GetAttrString(core, "emit");
}

static PyObject *
log_at(LoggerObject *self, Py_ssize_t level, PyObject *const *args, size_t nargsf,
       PyObject *kwnames)
{
    PyObject *core = self->core;
    PyObject *emit;
    if (core == NULL) {
        Py_RETURN_NONE; /* __init__ never ran: nothing to log to */
    }
    if (Py_IS_TYPE(core, &CoreType)) {
        CoreObject *c = (CoreObject *)core;
        if (c->threshold > level || c->emit == NULL) {
            Py_RETURN_NONE; /* the cost of a disabled level: this comparison */
        }
        emit = Py_NewRef(c->emit); /* held: a finalizer may reconfigure meanwhile */
    }
    else {
        /* Held: its threshold/emit lookups may run code that drops self->core. */
        Py_INCREF(core);
        emit = enabled_emit(core, level); /* any object with threshold and emit */
        Py_DECREF(core);
        if (emit == NULL) {
            return failed(NULL);
        }
        if (emit == Py_None) {
            return emit;
        }
    }
    EmitterObject *fast = Py_IS_TYPE(emit, &EmitterType) ? (EmitterObject *)emit : NULL;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *level_object = PyLong_FromSsize_t(level); /* a cached small int */
    /* Held, and read in the Python path's order (name, the message, then bound): Fmt(),
     * a finalizer run by an allocation, or another thread may rebind them meanwhile. */
    PyObject *name = Py_NewRef(self->name != NULL ? self->name : empty_text);
    PyObject *msg = message_of(args, nargs);
    int low = fast != NULL && level < WARNING; /* queued here, else handed to Python */
    PyObject *fields = msg == NULL               ? NULL
                       : low ? flat_fields_of(args + nargs, kwnames)
                             : fields_of(args + nargs, kwnames);
    PyObject *bound = Py_NewRef(self->bound != NULL ? self->bound : Py_None);
    PyObject *result = NULL;
    if (level_object != NULL && fields != NULL) {
        if (low) {
            result = emit_low(fast, level, level_object, name, msg, fields, bound, NULL);
        }
        else {
            PyObject *call[5] = {level_object, name, msg, fields, bound};
            result = PyObject_Vectorcall(emit, call, 5, NULL);
        }
    }
    Py_XDECREF(level_object);
    Py_XDECREF(msg);
    Py_XDECREF(fields);
    Py_DECREF(name);
    Py_DECREF(bound);
    if (result == NULL) {
        result = failed(fast);
    }
    Py_DECREF(emit);
    if (result != NULL && result != Py_None) {
        Py_SETREF(result, Py_NewRef(Py_None));
    }
    return result;
}

#define LEVEL_METHOD(method, level)                                                       \
    static PyObject *logger_##method(PyObject *self, PyObject *const *args, size_t nargsf, \
                                     PyObject *kwnames)                                   \
    {                                                                                     \
        return log_at((LoggerObject *)self, level, args, nargsf, kwnames);                \
    }

LEVEL_METHOD(trace, 5)
LEVEL_METHOD(debug, 10)
LEVEL_METHOD(info, 20)
LEVEL_METHOD(warning, 30)
LEVEL_METHOD(error, 40)
LEVEL_METHOD(critical, 50)

#define LEVEL_DOC(level) \
    PyDoc_STR(level "(msg='', /, *args, **fields): queue a record; never blocks or raises.")

static PyMethodDef logger_methods[] = {
    {"trace", (PyCFunction)(void (*)(void))logger_trace, METH_FASTCALL | METH_KEYWORDS,
     LEVEL_DOC("trace")},
    {"debug", (PyCFunction)(void (*)(void))logger_debug, METH_FASTCALL | METH_KEYWORDS,
     LEVEL_DOC("debug")},
    {"info", (PyCFunction)(void (*)(void))logger_info, METH_FASTCALL | METH_KEYWORDS,
     LEVEL_DOC("info")},
    {"warning", (PyCFunction)(void (*)(void))logger_warning, METH_FASTCALL | METH_KEYWORDS,
     LEVEL_DOC("warning")},
    {"error", (PyCFunction)(void (*)(void))logger_error, METH_FASTCALL | METH_KEYWORDS,
     LEVEL_DOC("error")},
    {"critical", (PyCFunction)(void (*)(void))logger_critical, METH_FASTCALL | METH_KEYWORDS,
     LEVEL_DOC("critical")},
    {NULL},
};

static PyMemberDef logger_members[] = {
    {"_core", T_OBJECT, offsetof(LoggerObject, core), 0, "The Core it logs through."},
    {NULL},
};

/* name and _bound are normalised as they are set (loglog/plain.py): a level method then
 * queues them as they are, and they are what loglog's threads touch. */
static PyObject *
logger_get_name(LoggerObject *self, void *closure)
{
    return Py_NewRef(self->name != NULL ? self->name : Py_None);
}

static int
logger_set_name(LoggerObject *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "a logger's name cannot be deleted");
        return -1;
    }
    PyObject *name;
    if (PyUnicode_CheckExact(value)) {
        name = Py_NewRef(value);
    }
    else if (exact_name_fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "loglog._speedups: set_normalisers() not called");
        return -1;
    }
    else {
        name = PyObject_CallOneArg(exact_name_fn, value);
        if (name == NULL) {
            return -1;
        }
        if (!PyUnicode_CheckExact(name)) {
            Py_DECREF(name);
            PyErr_SetString(PyExc_TypeError, "exact_name must return an exact str");
            return -1;
        }
    }
    Py_XSETREF(self->name, name);
    return 0;
}

/* A copy: the logger's own dict is never handed out, so nobody can add a key to it. */
static PyObject *
logger_get_bound(LoggerObject *self, void *closure)
{
    PyObject *bound = self->bound;
    return bound == NULL || bound == Py_None ? Py_NewRef(Py_None) : PyDict_Copy(bound);
}

static int
logger_set_bound(LoggerObject *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "a logger's bound fields cannot be deleted");
        return -1;
    }
    PyObject *bound;
    if (value == Py_None || (PyDict_CheckExact(value) && PyDict_GET_SIZE(value) == 0)) {
        bound = Py_NewRef(Py_None);
    }
    else if (PyDict_CheckExact(value) && exact_keys(value)) {
        bound = PyDict_Copy(value);
        if (bound == NULL) {
            return -1;
        }
    }
    else if (exact_bound_fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "loglog._speedups: set_normalisers() not called");
        return -1;
    }
    else {
        bound = PyObject_CallOneArg(exact_bound_fn, value); /* the mapping's code: here */
        if (bound == NULL) {
            return -1;
        }
        if (bound != Py_None && !(PyDict_CheckExact(bound) && exact_keys(bound))) {
            Py_DECREF(bound);
            PyErr_SetString(PyExc_TypeError, "exact_bound must return None or a plain dict");
            return -1;
        }
    }
    Py_XSETREF(self->bound, bound);
    return 0;
}

static PyGetSetDef logger_getset[] = {
    {"name", (getter)logger_get_name, (setter)logger_set_name,
     "The logger's name (an exact str).", NULL},
    {"_bound", (getter)logger_get_bound, (setter)logger_set_bound,
     "A copy of the fields bound to every record, or None.", NULL},
    {NULL},
};

static int
logger_traverse(LoggerObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->name);
    Py_VISIT(self->bound);
    Py_VISIT(self->core);
    return 0;
}

static int
logger_clear(LoggerObject *self)
{
    Py_CLEAR(self->name);
    Py_CLEAR(self->bound);
    Py_CLEAR(self->core);
    return 0;
}

static void
logger_dealloc(LoggerObject *self)
{
    PyObject_GC_UnTrack(self);
    logger_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject LoggerBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "loglog._speedups.LoggerBase",
    .tp_doc = PyDoc_STR("The level methods of loglog.Logger, in C."),
    .tp_basicsize = sizeof(LoggerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)logger_dealloc,
    .tp_traverse = (traverseproc)logger_traverse,
    .tp_clear = (inquiry)logger_clear,
    .tp_methods = logger_methods,
    .tp_members = logger_members,
    .tp_getset = logger_getset,
};

/* -- module ------------------------------------------------------------------------- */

static PyObject *
set_fmt(PyObject *module, PyObject *cls)
{
    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        PyErr_SetString(PyExc_RuntimeError, "loglog._speedups: the main interpreter only");
        return NULL;
    }
    if (!PyCallable_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "set_fmt: Fmt must be callable");
        return NULL;
    }
    Py_XSETREF(fmt_class, Py_NewRef(cls));
    Py_RETURN_NONE;
}

/* bound_of(logger): the logger's own bound dict, not a copy (Logger.log and .exception
 * pass it to emit, which only reads it). */
static PyObject *
bound_of(PyObject *module, PyObject *logger)
{
    if (!PyObject_TypeCheck(logger, &LoggerBaseType)) {
        PyErr_SetString(PyExc_TypeError, "bound_of: a Logger");
        return NULL;
    }
    PyObject *bound = ((LoggerObject *)logger)->bound;
    return Py_NewRef(bound != NULL ? bound : Py_None);
}

static PyObject *
set_normalisers(PyObject *module, PyObject *args)
{
    PyObject *name_fn, *bound_fn;
    if (!PyArg_ParseTuple(args, "OO:set_normalisers", &name_fn, &bound_fn)) {
        return NULL;
    }
    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        PyErr_SetString(PyExc_RuntimeError, "loglog._speedups: the main interpreter only");
        return NULL;
    }
    if (!PyCallable_Check(name_fn) || !PyCallable_Check(bound_fn)) {
        PyErr_SetString(PyExc_TypeError, "set_normalisers: two callables");
        return NULL;
    }
    Py_XSETREF(exact_name_fn, Py_NewRef(name_fn));
    Py_XSETREF(exact_bound_fn, Py_NewRef(bound_fn));
    Py_RETURN_NONE;
}

/* This module keeps process-wide state (Fmt, the cached thread id) in C statics, and a
 * single-phase extension is shared by every interpreter: only the main one may use it. */
static PyObject *
usable(PyObject *module, PyObject *unused)
{
    return PyBool_FromLong(PyInterpreterState_Get() == PyInterpreterState_Main());
}

/* fields_dict(flat): the dict of a flat (name, value, …) tuple, on the worker. */
static PyObject *
fields_dict(PyObject *module, PyObject *flat)
{
    if (!PyTuple_Check(flat) || PyTuple_GET_SIZE(flat) % 2) {
        PyErr_SetString(PyExc_TypeError, "fields_dict: a tuple of (name, value) pairs, flat");
        return NULL;
    }
    PyObject *fields = PyDict_New();
    if (fields == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(flat); i += 2) {
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(flat, i))) { /* no user code here */
            Py_DECREF(fields);
            PyErr_SetString(PyExc_TypeError, "fields_dict: field names must be str");
            return NULL;
        }
        if (PyDict_SetItem(fields, PyTuple_GET_ITEM(flat, i), PyTuple_GET_ITEM(flat, i + 1)) <
            0) {
            Py_DECREF(fields);
            return NULL;
        }
    }
    return fields;
}

static PyMethodDef module_methods[] = {
    {"fields_dict", fields_dict, METH_O,
     PyDoc_STR("fields_dict(flat): the dict of a flat (name, value, ...) fields tuple.")},
    {"set_fmt", set_fmt, METH_O,
     PyDoc_STR("set_fmt(Fmt): the class that wraps a message with %-arguments.")},
    {"bound_of", bound_of, METH_O,
     PyDoc_STR("bound_of(logger): the logger's own bound fields (not a copy), or None.")},
    {"set_normalisers", set_normalisers, METH_VARARGS,
     PyDoc_STR("set_normalisers(exact_name, exact_bound): a logger's name and bound fields "
               "that are not already an exact str and a plain dict (loglog/plain.py).")},
    {"usable", usable, METH_NOARGS,
     PyDoc_STR("usable(): whether this interpreter may use the module (the main one only).")},
    {NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "loglog._speedups",
    .m_doc = PyDoc_STR("loglog's hot path in C (see loglog/_speedups.c)."),
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&CoreType) < 0 || PyType_Ready(&EmitterType) < 0 ||
        PyType_Ready(&LoggerBaseType) < 0) {
        return NULL;
    }
    empty_text = PyUnicode_FromString("");
    minus_one = PyLong_FromLong(-1);
    if (empty_text == NULL || minus_one == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(module, "API", API) < 0 ||
        PyModule_AddObjectRef(module, "Core", (PyObject *)&CoreType) < 0 ||
        PyModule_AddObjectRef(module, "Emitter", (PyObject *)&EmitterType) < 0 ||
        PyModule_AddObjectRef(module, "LoggerBase", (PyObject *)&LoggerBaseType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
