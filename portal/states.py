"""Explicit state machines: a model lists its allowed transitions once, in ``TRANSITIONS``."""


class InvalidTransition(Exception):
    def __init__(self, obj, current, target):
        self.current, self.target = current, target
        super().__init__(f"{obj._meta.verbose_name} cannot go from {current} to {target}")


class StateMachineMixin:
    TRANSITIONS: dict = {}
    state_field = "state"

    def can_transition(self, target):
        return target in self.TRANSITIONS.get(getattr(self, self.state_field), set())

    def transition(self, target):
        """Set the new state in memory, refusing a transition the model does not allow."""
        current = getattr(self, self.state_field)
        if current == target:
            return False
        if not self.can_transition(target):
            raise InvalidTransition(self, current, target)
        setattr(self, self.state_field, target)
        return True
