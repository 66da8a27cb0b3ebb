"""edgewatch: the shared core. Pure code only: no sockets, no files, no clocks read here.

Everything that talks to the world (MQTT, InfluxDB, processes, the browser) lives in the
rooms around it: `ingest`, `edge`, `dashboard`, `stack`, `bench`.
"""

__version__ = "0.1.0"
