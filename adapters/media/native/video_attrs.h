/* The attribute helpers the video step needs beyond pyslots.h's: ints that may be None, items of list attributes,
 * and the result of a Python call it makes only for its side effect. Every helper returns -1 with an
 * exception set on failure, like pyslots.h's, so a step function can chain them with `||`. Included once, through
 * simulcast_step.h, after pyslots.h (cs_getattr, cs_setattr).
 */
#ifndef CALLSD_VIDEO_ATTRS_H
#define CALLSD_VIDEO_ATTRS_H

/* An int attribute that may be None: *out = -1 for None (every such field is non-negative otherwise). */
static int get_opt_ll(PyObject *obj, PyObject *name, long long *out) {
    PyObject *v = cs_getattr(obj, name);
    if (v == NULL)
        return -1;
    if (v == Py_None) {
        Py_DECREF(v);
        *out = -1;
        return 0;
    }
    long long x = PyLong_AsLongLong(v);
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred())
        return -1;
    *out = x;
    return 0;
}

/* Item `i` of the list attribute `name` of `obj` (new reference), checked. */
static PyObject *list_item(PyObject *obj, PyObject *name, Py_ssize_t i) {
    PyObject *list = cs_getattr(obj, name);
    if (list == NULL)
        return NULL;
    if (!PyList_Check(list) || i < 0 || i >= PyList_GET_SIZE(list)) {
        Py_DECREF(list);
        PyErr_Format(PyExc_TypeError, "%U must be a list with item %zd", name, i);
        return NULL;
    }
    PyObject *v = Py_NewRef(PyList_GET_ITEM(list, i));
    Py_DECREF(list);
    return v;
}

static int list_set(PyObject *list, Py_ssize_t i, PyObject *value) {
    if (!PyList_Check(list) || i < 0 || i >= PyList_GET_SIZE(list)) {
        PyErr_SetString(PyExc_TypeError, "a list with that item was expected");
        return -1;
    }
    return PyList_SetItem(list, i, Py_NewRef(value));
}

static int list_set_ll(PyObject *list, Py_ssize_t i, long long value) {
    PyObject *v = PyLong_FromLongLong(value);
    if (v == NULL)
        return -1;
    int rc = list_set(list, i, v);
    Py_DECREF(v);
    return rc;
}

/* obj.name[i] += delta, for a list of ints. */
static int list_add_ll(PyObject *obj, PyObject *name, Py_ssize_t i, long long delta) {
    PyObject *list = cs_getattr(obj, name);
    if (list == NULL)
        return -1;
    int rc = -1;
    if (PyList_Check(list) && i >= 0 && i < PyList_GET_SIZE(list)) {
        long long x = PyLong_AsLongLong(PyList_GET_ITEM(list, i));
        if (!(x == -1 && PyErr_Occurred()))
            rc = list_set_ll(list, i, x + delta);
    } else {
        PyErr_Format(PyExc_TypeError, "%U must be a list with item %zd", name, i);
    }
    Py_DECREF(list);
    return rc;
}

static int call_ok(PyObject *result) {
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

#endif
