"""Which Ray node each trial ran on, in its MLflow run.

``ReportNode`` is mixed into every sweep's trainable (beside
``restore.RestoreFromNewest``): each result carries the Ray node id of the
process that made it (Tune itself adds only ``node_ip``, which is the same for
every node of a one-machine cluster). The sweep's MLflow callback turns a
change of node into tags of the trial's run (``spool.trial_callback``):

- ``reconlab.node_id`` / ``reconlab.node_ip``: where it reported last;
- ``reconlab.nodes``: every node it ran on, in order, comma-separated: a trial
  retried on another node after its node died (a preempted spot worker) lists
  both. Kept by the driver: a driver restarted with ``--resume`` starts the
  list again from the node the trial continues on.
"""

from __future__ import annotations

TAG_NODE_ID = "reconlab.node_id"
TAG_NODE_IP = "reconlab.node_ip"
TAG_NODES = "reconlab.nodes"
NODE_ID = "node_id"  # the result key


class ReportNode:
    """Trainable mixin: every result names the Ray node it was made on."""

    def train(self):
        result = super().train()
        if NODE_ID not in result:
            import ray

            result[NODE_ID] = ray.get_runtime_context().get_node_id()
        return result


def node_change(seen: dict[str, list[str]], trial_id: str, result: dict) -> dict[str, str] | None:
    """The trial's node tags when ``result`` comes from another node than its
    last one (recorded in ``seen``), else None."""
    node = result.get(NODE_ID)
    if not isinstance(node, str) or not node:
        return None
    nodes = seen.setdefault(trial_id, [])
    if nodes and nodes[-1] == node:
        return None
    nodes.append(node)
    return {TAG_NODE_ID: node, TAG_NODE_IP: str(result.get("node_ip", "")), TAG_NODES: ",".join(nodes)}
