"""Development helpers: broker launchers for tests and the demo, process supervision, the sample mesh, the demo."""
