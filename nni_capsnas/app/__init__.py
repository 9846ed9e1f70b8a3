"""The nni-capsnas application: configuration, experiment building, search runner, training
service, resume guard, report, and the ``nni-capsnas`` command line.

The one place that composes every package: the plugin layer (capsule modules, strategies,
export, hardware cost) never imports ``nni_capsnas.app``, ``search_spaces`` or ``trials``.
"""
