"""Shards: an arm's realizations split into independent pieces, run in-process (:mod:`.inprocess`)
or on Ray (:mod:`.on_ray`, imported only when asked for); a shard's numbers depend only on
(seed, realization id, step). :mod:`.task` runs one shard, :mod:`.files` keeps its checkpoints."""
