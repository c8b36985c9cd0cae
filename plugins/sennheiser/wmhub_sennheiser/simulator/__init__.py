"""Protocol-level simulators of Sennheiser receivers, on loopback, many per process.

``python -m wmhub_sennheiser.simulator --protocol ssc1|g4 --model ...`` runs them from a shell; tests
import the classes (``Ssc1Simulator``, ``G4Simulator``) and the demo mode uses :class:`SennheiserDemoFleet`.
"""
