"""Two Chromium pages as two users of the demo client (one of them on the msgpack parser): sign-in,
chat both ways with delivered/read ticks, typing, edit and delete, presence changes, buying credits,
blocking — on one node, and with each user on a different node sharing Redis."""

from __future__ import annotations

from playwright.sync_api import Locator, Page, expect

from server.auth import mint_token
from tests.conftest import TEST_SECRET
from tests.server.demo.browser import Cluster, Pages, shot, user


def _open(page: Page, peer: str) -> None:
    page.get_by_test_id("contact").fill(peer)
    page.get_by_test_id("contact-open").click()
    expect(page.get_by_test_id("peer-name")).to_have_text(peer)


def _send(page: Page, text: str) -> None:
    page.get_by_test_id("text").fill(text)
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("text")).to_have_value("")


def _message(page: Page, text: str) -> Locator:
    return page.get_by_test_id("message").filter(has_text=text)


def test_two_users_chat_with_receipts_presence_and_credits(cluster: Cluster, pages: Pages) -> None:
    a, b = user("alice"), user("bob")
    alice = pages.open(cluster.node(0), a)
    bob = pages.open(cluster.node(1), b, parser="msgpack")
    expect(alice.get_by_test_id("balance")).to_have_text("10")  # the signup bonus

    # Alice writes first: Bob's page confirms delivery at once, and shows the conversation as unread.
    _open(alice, b)
    expect(alice.get_by_test_id(f"presence-{b}")).to_have_text("online")
    _send(alice, "hello bob")
    expect(_message(alice, "hello bob")).to_have_attribute("data-status", "delivered")
    expect(bob.get_by_test_id(f"unread-{a}")).to_have_text("1")
    expect(alice.get_by_test_id("balance")).to_have_text("9")  # one credit per message

    # Bob opens it: read receipt to Alice, unread badge gone.
    bob.get_by_test_id(f"conv-{a}").click()
    expect(_message(bob, "hello bob")).to_be_visible()
    expect(_message(alice, "hello bob")).to_have_attribute("data-status", "read")
    expect(bob.get_by_test_id(f"unread-{a}")).to_have_count(0)

    # Typing, then a reply the other way, read at once since Alice has the conversation open.
    alice.get_by_test_id("text").press_sequentially("still th")
    expect(bob.get_by_test_id("typing")).to_have_text(f"{a} is typing…")
    _send(bob, "hi alice")
    expect(_message(alice, "hi alice")).to_be_visible()
    expect(_message(bob, "hi alice")).to_have_attribute("data-status", "read")
    expect(bob.get_by_test_id("typing")).to_have_text("")

    # Edit and delete for everyone reach the other side.
    _message(alice, "hello bob").get_by_test_id("edit").click()
    alice.get_by_test_id("text").fill("hello bob, edited")
    alice.get_by_test_id("send").click()
    expect(_message(bob, "hello bob, edited")).to_contain_text("(edited)")
    # Alice's page leaves edit mode when her own ack arrives, which may come after Bob's update: a
    # message typed before that would be taken for the edit (or cleared with the composer).
    expect(alice.get_by_test_id("send")).to_have_text("Send")
    _send(alice, "oops")
    expect(_message(bob, "oops")).to_be_visible()
    _message(alice, "oops").get_by_test_id("delete-everyone").click()
    expect(bob.get_by_test_id("message").filter(has_text="oops")).to_have_count(0)
    expect(bob.get_by_test_id("message").filter(has_text="message deleted")).to_have_count(1)

    # Buying credits with the dev provider: the balance moves live (wallet:updated).
    expect(alice.get_by_test_id("balance")).to_have_text("8")  # two messages sent; edits are free
    alice.get_by_test_id("package").select_option("small")
    alice.get_by_test_id("buy").click()
    expect(alice.get_by_test_id("balance")).to_have_text("58")
    shot(alice, f"chat-alice-{cluster.count}node")
    shot(bob, f"chat-bob-{cluster.count}node")

    # Presence: away, back online, then gone (last seen).
    bob.get_by_test_id("my-status").select_option("away")
    expect(alice.get_by_test_id(f"presence-{b}")).to_have_text("away")
    bob.get_by_test_id("my-status").select_option("online")
    expect(alice.get_by_test_id(f"presence-{b}")).to_have_text("online")

    # Blocking: Alice's next message is refused, and she is told why in words.
    bob.get_by_test_id("block").click()
    expect(bob.get_by_test_id("block")).to_have_text("Unblock")
    alice.get_by_test_id("text").fill("are you there?")
    alice.get_by_test_id("send").click()
    expect(alice.get_by_test_id("notice-error").first).to_contain_text("Message not sent: Blocked")
    expect(alice.get_by_test_id("balance")).to_have_text("58")  # refused: not charged
    bob.get_by_test_id("block").click()
    expect(bob.get_by_test_id("block")).to_have_text("Block")

    bob.context.close()
    expect(alice.get_by_test_id(f"presence-{b}")).to_contain_text("offline, last seen")


def test_a_pasted_token_is_used_and_a_refusal_is_shown_in_words(cluster: Cluster, pages: Pages) -> None:
    good = mint_token(TEST_SECRET, user("frank"), name="Frank")
    forged = mint_token("not-the-server-secret-0123456789abcdef", user("mallory"))
    for token, shown in ((good, "connected"), (forged, "refused: auth_invalid")):
        page = pages.blank(cluster.node(0))
        page.get_by_text("paste a JWT").click()
        page.get_by_test_id("signin-token").fill(token)
        page.get_by_role("button", name="Use this token").click()
        expect(page.get_by_test_id("conn")).to_have_text(shown)
    expect(page.get_by_test_id("notice-error").first).to_contain_text("The token was refused")


SEND_MANY = """async ([to, count]) => {
  const { request } = await import("./net.js");
  for (let i = 1; i <= count; i++) {
    await request(window.pairly.chat.socket, "message:send", { to, client_id: `bulk-${i}`, text: `bulk ${i}` });
  }
}"""


def test_history_pages_and_a_reconnect_catches_up_with_sync(cluster: Cluster, pages: Pages) -> None:
    a, b = user("alice"), user("bob")
    alice = pages.open(cluster.node(0), a)
    alice.get_by_test_id("package").select_option("small")
    alice.get_by_test_id("buy").click()
    expect(alice.get_by_test_id("balance")).to_have_text("60")
    alice.evaluate(SEND_MANY, [b, 35])  # through the page's own socket, as the composer would

    # Bob signs in afterwards: history comes 30 at a time, newest first; "Load older" fetches the rest.
    bob = pages.open(cluster.node(1), b)
    _open(bob, a)
    expect(bob.get_by_test_id("message")).to_have_count(30)
    expect(bob.get_by_test_id("message").first.locator(".body")).to_have_text("bulk 6")
    bob.get_by_test_id("older").click()
    expect(bob.get_by_test_id("message")).to_have_count(35)
    expect(bob.get_by_test_id("older")).to_be_hidden()

    # Bob drops off; what Alice sends meanwhile reaches him through `sync` when he is back, and is read.
    bob.evaluate("Object.values(window.pairly.sockets).forEach((s) => s.disconnect())")
    expect(bob.get_by_test_id("conn")).to_contain_text("reconnecting")
    _open(alice, b)
    _send(alice, "while you were away")
    expect(_message(alice, "while you were away")).to_have_attribute("data-status", "sent")
    bob.evaluate("Object.values(window.pairly.sockets).forEach((s) => s.connect())")
    expect(_message(bob, "while you were away")).to_be_visible()
    expect(_message(alice, "while you were away")).to_have_attribute("data-status", "read")
