"""Development-time generators (CRD, RBAC, operator manifests, calibration tables).

They read the core and write files in the repository; the running operator never imports them.
"""
