/* Reading and writing attributes of the Python objects the step shares with the Python path, fast for slotted
 * classes and exactly PyObject_GetAttr/SetAttr otherwise. Included once, by _engine.c. */
#ifndef CALLSD_PYSLOTS_H
#define CALLSD_PYSLOTS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "structmember.h"

/* -- attribute access ----------------------------------------------------------------------------------------
 * The step reads and writes ~20 attributes per forwarded packet on slotted Python objects (InTrack, OutRoute,
 * Peer...). For those, PyObject_GetAttr walks the type's MRO cache and calls the member descriptor each time; here
 * a small memo remembers, per (exact type, name), the slot's offset, valid while the type's version tag is
 * unchanged (CPython bumps it whenever the type or a base is modified). Anything else (a property, a __dict__
 * attribute, a type with its own __getattribute__/__setattr__, an unset slot) goes through the generic calls. */
#define SLOT_MEMO_SETS 256 /* two ways each: the step's ~40 (type, name) pairs never evict each other */
typedef struct {
    PyTypeObject *type;
    PyObject *name;
    unsigned int version;
    Py_ssize_t offset; /* -1: not a plain object slot, use the generic call */
} slot_memo;
static slot_memo slot_memos[SLOT_MEMO_SETS][2];

/* A direct-mapped memo of 128 entries indexed by (type ^ name) >> 4 made some pairs the step uses on every packet
 * share an entry, so each evicted the other and every access paid _PyType_Lookup (~250 instructions): a
 * multiplicative hash and two ways per set. */
static inline slot_memo *slot_memo_set(PyTypeObject *type, PyObject *name) {
    uint64_t h = ((uint64_t)(uintptr_t)type ^ ((uint64_t)(uintptr_t)name << 7)) * 0x9E3779B97F4A7C15ULL;
    return slot_memos[h >> 56]; /* the top 8 bits: SLOT_MEMO_SETS == 256 */
}

/* A setattr that is the generic one plus bookkeeping, so its types' slots still read as plain slots (writes go
 * through it: cs_setattr): _engine's send_state_setattro (send_state.h), set when the module initialises; none in
 * a module without routes (the load tool's). */
static setattrofunc slot_plain_setattro;

static Py_ssize_t slot_offset(PyObject *obj, PyObject *name) {
    PyTypeObject *type = Py_TYPE(obj);
    slot_memo *set = slot_memo_set(type, name);
    for (int way = 0; way < 2; way++) {
        slot_memo *m = &set[way];
        if (m->type == type && m->name == name && m->version == type->tp_version_tag && type->tp_version_tag != 0)
            return m->offset;
    }
    Py_ssize_t offset = -1;
    if (type->tp_getattro == PyObject_GenericGetAttr &&
        (type->tp_setattro == PyObject_GenericSetAttr ||
         (slot_plain_setattro != NULL && type->tp_setattro == slot_plain_setattro))) {
        PyObject *descr = _PyType_Lookup(type, name); /* borrowed; sets the type's version tag */
        if (descr != NULL && Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            PyMemberDef *def = ((PyMemberDescrObject *)descr)->d_member;
            if (def->type == T_OBJECT_EX && !(def->flags & READONLY))
                offset = def->offset;
        }
    }
    if (type->tp_version_tag != 0 && (type->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG)) {
        set[1] = set[0]; /* the older entry moves to the second way */
        set[0] = (slot_memo){type, name, type->tp_version_tag, offset};
    }
    return offset;
}

/* PyObject_GetAttr with the slot memo: a new reference, or NULL with an exception set. */
static PyObject *cs_getattr(PyObject *obj, PyObject *name) {
    Py_ssize_t offset = slot_offset(obj, name);
    if (offset >= 0) {
        PyObject *v = *(PyObject **)((char *)obj + offset);
        if (v != NULL)
            return Py_NewRef(v);
    }
    return PyObject_GetAttr(obj, name);
}

/* PyObject_SetAttr with the slot memo: 0, or -1 with an exception set. */
static int cs_setattr(PyObject *obj, PyObject *name, PyObject *value) {
    Py_ssize_t offset = slot_offset(obj, name);
    if (offset >= 0 && Py_TYPE(obj)->tp_setattro == PyObject_GenericSetAttr) {
        PyObject **slot = (PyObject **)((char *)obj + offset);
        PyObject *old = *slot;
        *slot = Py_NewRef(value);
        Py_XDECREF(old);
        return 0;
    }
    return PyObject_SetAttr(obj, name, value);
}

/* -- attribute helpers: -1 with an exception set on failure -- */

static int get_ll(PyObject *obj, PyObject *name, long long *out) {
    PyObject *v = cs_getattr(obj, name);
    if (v == NULL)
        return -1;
    long long x = PyLong_AsLongLong(v);
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred())
        return -1;
    *out = x;
    return 0;
}

static int set_ll(PyObject *obj, PyObject *name, long long value) {
    PyObject *v = PyLong_FromLongLong(value);
    if (v == NULL)
        return -1;
    int rc = cs_setattr(obj, name, v);
    Py_DECREF(v);
    return rc;
}

static int add_ll(PyObject *obj, PyObject *name, long long delta) {
    long long x;
    if (get_ll(obj, name, &x) < 0)
        return -1;
    return set_ll(obj, name, x + delta);
}

static int get_double(PyObject *obj, PyObject *name, double *out) {
    PyObject *v = cs_getattr(obj, name);
    if (v == NULL)
        return -1;
    double x = PyFloat_AsDouble(v);
    Py_DECREF(v);
    if (x == -1.0 && PyErr_Occurred())
        return -1;
    *out = x;
    return 0;
}

static int set_double(PyObject *obj, PyObject *name, double value) {
    PyObject *v = PyFloat_FromDouble(value);
    if (v == NULL)
        return -1;
    int rc = cs_setattr(obj, name, v);
    Py_DECREF(v);
    return rc;
}

static int get_truth(PyObject *obj, PyObject *name) {
    PyObject *v = cs_getattr(obj, name);
    if (v == NULL)
        return -1;
    int t = PyObject_IsTrue(v);
    Py_DECREF(v);
    return t;
}

#endif
