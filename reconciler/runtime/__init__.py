"""The processes: the controller loop (which sleeps on the store's subscription), the actor and the GitOps watcher."""
