"""What every cashier form shares: fields checked as they are typed, a review step
before anything is written, the request in a thread worker, the agent's answer as a
message, and a supervisor's PIN asked for when the agent says it needs one.

Keys: Tab moves between fields, Enter reviews and then confirms (so does F10),
Esc goes back without writing anything.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.validation import Validator
from textual.widgets import Checkbox, Footer, Input, Label, Static

from agent.client import AgentClient
from agent.errors import LedgerError
from ui.messages import Answered, Outcome
from ui.texts import operation_error


class Tick(Checkbox, inherit_bindings=False):
    """A checkbox toggled by Space only, so that Enter submits the form from it too."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("space", "toggle_button", show=False)]


class FormError(Exception):
    """A field is wrong: the form focuses it and shows why."""

    def __init__(self, field_id: str, message: str) -> None:
        super().__init__(message)
        self.field_id, self.message = field_id, message


class Request:
    """A request the form will send once the cashier confirms it."""

    def __init__(self, method: str, path: str, body: dict[str, Any] | None, summary: str) -> None:
        self.method, self.path, self.body, self.summary = method, path, body, summary


class FormScreen(ModalScreen[Outcome | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("f10", "submit", "Confirm"),
        Binding("enter", "submit", show=False),
    ]
    HEADING = ""
    CONFIRM = True  # show a review of the request before sending it
    # Where the agent's `supervisor_required` answer is met by asking for a
    # supervisor's id and PIN and sending again (None: the form cannot).
    SUPERVISOR_FIELDS: tuple[str, str] | None = None

    def __init__(self, client: AgentClient, *, cursor_blink: bool = True) -> None:
        super().__init__()
        self.client = client
        self.cursor_blink = cursor_blink
        self.pending: Request | None = None
        self.busy = False

    # -- layout --------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.HEADING, id="heading")
            yield from self.fields()
            yield Static("", id="notice")
        yield Footer(compact=True, show_command_palette=False)

    def fields(self) -> ComposeResult:
        yield from ()

    def field(
        self,
        label: str,
        field_id: str,
        placeholder: str = "",
        validators: list[Validator] | None = None,
        value: str = "",
        password: bool = False,
    ) -> ComposeResult:
        """One labelled input with a line under it for what is wrong with it."""
        entry = Input(
            value=value,
            placeholder=placeholder,
            id=field_id,
            validators=validators or [],
            validate_on=["changed"],
            password=password,
            compact=True,
        )
        entry.cursor_blink = self.cursor_blink
        with Horizontal(classes="row"):
            yield Label(label, classes="label")
            yield entry
        yield Static("", id=f"{field_id}-hint", classes="hint")

    def checkbox(self, label: str, field_id: str) -> ComposeResult:
        with Horizontal(classes="row"):
            yield Label("", classes="label")
            yield Tick(label, id=field_id, compact=True)

    def value(self, field_id: str) -> str:
        return self.query_one(f"#{field_id}", Input).value.strip()

    def say(self, text: str, kind: str = "") -> None:
        notice = self.query_one("#notice", Static)
        notice.update(text)
        notice.set_classes(kind)

    # -- what each form says ---------------------------------------------------------

    def request(self) -> Request:
        raise NotImplementedError

    def outcome(self, result: dict[str, Any], request: Request) -> Outcome:
        raise NotImplementedError

    def accept_scan(self, scan: dict[str, Any]) -> bool:
        """Take a scan (a card field fills from the next swipe); False: not for us."""
        return False

    # -- typing and reviewing ----------------------------------------------------------

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        self.pending = None
        hint = self.query(f"#{event.input.id}-hint")
        if hint:
            result = event.validation_result
            wrong = result is not None and not result.is_valid
            text = "; ".join(result.failure_descriptions) if result is not None and wrong else ""
            line = hint.first(Static)
            line.update(escape(text))
            line.display = bool(text)
        if not self.busy:
            self.say("")

    @on(Checkbox.Changed)
    def _checked(self) -> None:
        self.pending = None

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_submit()

    def action_back(self) -> None:
        if not self.busy:
            self.dismiss(None)

    def action_submit(self) -> None:
        if self.busy:
            return
        if self.pending is not None:
            self.confirm(self.pending)
            return
        for entry in self.query(Input):
            result = entry.validate(entry.value)
            if result is not None and not result.is_valid:
                entry.focus()
                self.say(f"{escape('; '.join(result.failure_descriptions))}", "-error")
                return
        try:
            request = self.request()
        except FormError as error:
            self.query_one(f"#{error.field_id}").focus()
            self.say(escape(error.message), "-error")
            return
        if not self.CONFIRM:
            self.send(request)
            return
        self.pending = request
        self.say(f"{escape(request.summary)}\n[b]Enter[/b] or [b]F10[/b]: confirm · Esc: back")

    def confirm(self, request: Request) -> None:
        """Send a reviewed request (forms that always need a PIN ask for it first)."""
        self.send(request)

    # -- the request, in a worker ------------------------------------------------------

    def send(self, request: Request) -> None:
        self.busy = True
        self.say("Sending to the till agent…", "-busy")
        self._call_agent(request)

    @work(thread=True, exclusive=True, group="request")
    def _call_agent(self, request: Request) -> None:
        try:
            if request.method == "GET":
                result = self.client.get(request.path)
            else:
                result = self.client.post(request.path, request.body or {})
        except LedgerError as error:
            self.post_message(Answered(code=error.code, message=error.message, body=request))
        else:
            self.post_message(Answered(result=result, body=request))

    @on(Answered)
    def _answered(self, answer: Answered) -> None:
        self.busy = False
        request: Request = answer.body
        if not answer.failed:
            self.dismiss(self.outcome(answer.result, request))
            return
        self.pending = None
        if answer.code == "supervisor_required" and self.SUPERVISOR_FIELDS is not None:
            self.say(f"{escape(answer.message)}", "-warn")
            self.ask_supervisor(request)
            return
        self.say(escape(operation_error(answer.code, answer.message)), "-error")

    def ask_supervisor(self, request: Request) -> None:
        from ui.screens.supervisor import SupervisorScreen

        assert self.SUPERVISOR_FIELDS is not None
        staff_key, pin_key = self.SUPERVISOR_FIELDS

        def resend(credentials: tuple[str, str] | None) -> None:
            if credentials is None:
                self.say("Not sent: a supervisor's PIN is needed.", "-warn")
                return
            body = {**(request.body or {}), staff_key: credentials[0], pin_key: credentials[1]}
            self.send(Request(request.method, request.path, body, request.summary))

        self.app.push_screen(SupervisorScreen(cursor_blink=self.cursor_blink), resend)
