"""Event sinks: where action events go (MQTT, a JSON-lines file), behind one protocol
(protocol.py) and registered in one table (table.py); runner.py runs the configured ones
over the durable outbox."""
