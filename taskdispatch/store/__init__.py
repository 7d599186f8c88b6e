"""The Redis store: keys, connections, the optimistic transaction and every read and write.

Each multi-key change is one MULTI/EXEC or one script (the scripts live in `lua/`).
"""
