#!/usr/bin/env python3
"""moto_server with Kinesis resharding made faithful to AWS (used by infra/moto.sh).

moto 5 routes a record to the first shard whose hash range holds its key, open or closed,
so records put after a split land in the closed parent; and SplitShard moves the parent's
records into the children. On AWS a closed parent keeps its records and takes no new ones.
This wrapper patches both, then runs moto's own server main (same arguments).

Fault injection for tests: GetRecords on a stream whose name starts with "faulty-" fails
with ExpiredIteratorException on every 3rd call and ProvisionedThroughputExceededException
on every 5th call per shard, as AWS does when a reader is slow or too fast.
"""
import sys
from collections import OrderedDict

from moto.kinesis import models
from moto.kinesis.exceptions import InvalidArgumentError
from moto.core.exceptions import JsonRESTError
from moto.server import main

_split = models.Stream.split_shard
_route = models.Stream.get_shard_for_key


def get_shard_for_key(self, partition_key, explicit_hash_key):
    shard = _route(self, partition_key, explicit_hash_key)  # validates the key
    if shard is None or shard.is_open:
        return shard
    if explicit_hash_key:
        key = int(explicit_hash_key)
    else:
        key = int(models.md5_hash(partition_key.encode("utf-8")).hexdigest(), 16)
    for s in self.shards.values():
        if s.is_open and s.starting_hash <= key <= s.ending_hash:
            return s
    raise InvalidArgumentError("no open shard for the key")


def split_shard(self, shard_to_split, new_starting_hash_key):
    parent = self.shards[shard_to_split]
    kept = OrderedDict(parent.records)
    before = set(self.shards)
    _split(self, shard_to_split, new_starting_hash_key)
    parent.records = kept
    for sid in set(self.shards) - before:
        self.shards[sid].records = OrderedDict()


_get_records = models.KinesisBackend.get_records
_calls = {}


def get_records(self, stream_arn, shard_iterator, limit):
    stream, shard, _ = models.decompose_shard_iterator(shard_iterator)
    if stream.startswith("faulty-"):
        n = _calls[(stream, shard)] = _calls.get((stream, shard), 0) + 1
        if n % 3 == 0:
            raise JsonRESTError("ExpiredIteratorException", "Iterator expired (injected)")
        if n % 5 == 0:
            raise JsonRESTError(
                "ProvisionedThroughputExceededException", "Rate exceeded (injected)"
            )
    return _get_records(self, stream_arn, shard_iterator, limit)


if not hasattr(models, "decompose_shard_iterator") or not hasattr(models, "md5_hash"):
    sys.exit("infra/moto_server.py: this moto's Kinesis internals changed; use moto 5 (see .ci/run)")
models.KinesisBackend.get_records = get_records
models.Stream.get_shard_for_key = get_shard_for_key
models.Stream.split_shard = split_shard

if __name__ == "__main__":
    main()
