"""refmesh: the pure core of the inter-agency referral mesh.

Records, codec, sealed envelopes, the signed agency directory, policy and aggregation maths.
Nothing here does network I/O, reads the clock or the environment: callers pass ``now`` (epoch
milliseconds) and bytes in, and get values and bytes back.
"""
