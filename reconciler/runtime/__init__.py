"""The processes: the controller loop, the actor, wake-ups and the GitOps watcher."""
