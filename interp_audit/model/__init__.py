"""The model layer: a :class:`~interp_audit.model.subject.Subject` wraps one network behind its
family adapter (:mod:`.adapters`, the only code that knows families and hook names), with
loading, devices, memory planning, component labels and readouts."""
