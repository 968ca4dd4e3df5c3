"""End-to-end: OPML feed lists in Telegram (issue 17, part 2), through the fake Bot API.

The real ``storywatch run`` process downloads an admin's uploaded ``.opml`` document
(getFile, then the file URL under ``STORYWATCH_TELEGRAM_FILE_URL``), checks each feed
against the feed server on 127.0.0.1 and answers with one summary; ``/export`` answers
with an OPML document (sendDocument) whose content imports back to the same feeds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.parsing.opml import MAX_OPML_BYTES, MAX_OUTLINES, OpmlFeed, read_opml
from tests.e2e.conftest import ADMIN, BotProcess, Chat, Feed
from tests.support.fake_telegram import FakeTelegram, Sent
from tests.support.feed_server import FeedServer, Route
from tests.unit.test_opml import BILLION_LAUGHS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def upload(chat: Chat, name: str, content: bytes, *, declared_size: int | None = None,
           mime_type: str = "text/x-opml") -> str:
    """Send ``content`` as a document and return the bot's reply."""
    fake = chat.fake
    before = len(fake.messages(chat.chat_id))
    fake.user_sends_document(chat.chat_id, name, content, user_id=chat.user_id,
                             declared_size=declared_size, mime_type=mime_type)

    def replies() -> list[str]:
        return [t for t in fake.texts(chat.chat_id)[before:] if not t.startswith("📰")]

    fake.wait_for(lambda: bool(replies()), 90, f"a reply to the upload in {chat.chat_id}")
    return replies()[0]


def export(chat: Chat) -> Sent:
    """Send /export and return the document the bot sends back."""
    fake = chat.fake
    before = len(fake.documents(chat.chat_id))
    chat.send("/export")
    fake.wait_for(lambda: len(fake.documents(chat.chat_id)) > before, 30, "the OPML document")
    return fake.documents(chat.chat_id)[before]


def listing(feeds: FeedServer, wire: Feed, desk: Feed, news: Feed) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0">
  <head><title>My reading list</title></head>
  <body>
    <outline text="World">
      <outline text="wire" title="My wire" type="rss" xmlUrl="{wire.url}"/>
      <outline text="Desks">
        <outline text="Desk from the folder" type="rss" xmlUrl="{desk.url}"/>
      </outline>
    </outline>
    <outline text="World News" type="rss" xmlUrl="{news.url}"/>
    <outline text="Gone" type="rss" xmlUrl="{feeds.url('/gone.xml')}"/>
    <outline text="Mail port" type="rss" xmlUrl="http://127.0.0.1:25/rss"/>
  </body>
</opml>
""".encode()


def test_an_admin_uploads_a_list_then_exports_it_and_the_export_imports_back(
    bot: BotProcess, fake: FakeTelegram, news: Feed, feeds: FeedServer
) -> None:
    admin = Chat(fake, ADMIN)
    wire = Feed(feeds, "/wire.xml", "Wire (its own title)")
    wire.publish("Wang Yi to visit Russia")
    desk = Feed(feeds, "/desk.xml", "Desk")
    desk.publish("Markets close lower")
    feeds.set_route("/gone.xml", Route(body=b"gone", status=404, content_type="text/plain"))

    reply = upload(admin, "reading-list.opml", listing(feeds, wire, desk, news))
    assert reply.startswith("Imported the feed list: 2 added, 1 already watched, 2 failed.")
    assert f"✗ {feeds.url('/gone.xml')} — the server answered HTTP 404" in reply
    assert "✗ http://127.0.0.1:25/rss — refused: port 25 is not used for web feeds" in reply
    assert f"My wire — {wire.url}" in reply and f"Desk from the folder — {desk.url}" in reply
    assert f"= {news.url}" in reply
    assert len(fake.downloads) == 1  # through getFile and the file URL
    assert len(feeds.requests_for("/wire.xml")) >= 1  # each feed was fetched to check it

    document = export(admin)
    name, content = document.document or ("", b"")
    if os.environ.get("STORYWATCH_TRANSCRIPTS"):  # the file itself, beside the transcript
        where = Path(os.environ["STORYWATCH_TRANSCRIPTS"])
        where.mkdir(parents=True, exist_ok=True)
        (where / "exported-by-bot.opml").write_bytes(content)
    assert name == "storywatch-feeds.opml"
    assert document.current.startswith("3 feed(s) as OPML 2.0.")
    exported = read_opml(content)
    assert sorted(exported, key=lambda f: f.url) == sorted([
        OpmlFeed(news.url, "World News"),  # its own title, from its first poll
        OpmlFeed(wire.url, "My wire"),  # the list's names are kept
        OpmlFeed(desk.url, "Desk from the folder"),
    ], key=lambda f: f.url)

    back = upload(admin, "storywatch-feeds.opml", content)
    assert back.startswith("Imported the feed list: 0 added, 3 already watched, 0 failed.")
    assert sorted(read_opml(export(admin).document[1]), key=lambda f: f.url) == sorted(  # type: ignore[index]
        exported, key=lambda f: f.url)


def test_non_admins_and_bad_files_are_refused_and_change_nothing(
    bot: BotProcess, fake: FakeTelegram, news: Feed, feeds: FeedServer
) -> None:
    admin, user = Chat(fake, ADMIN), Chat(fake, 2002)
    wire = Feed(feeds, "/wire.xml", "Wire")
    wire.publish("Wang Yi to visit Russia")
    good = listing(feeds, wire, wire, news)

    refusal = upload(user, "list.opml", good)
    assert refusal.startswith("Sorry, I only take files from the bot's admins")
    assert fake.downloads == []  # refused before anything was downloaded
    assert user.say("/export").startswith("Sorry, only the bot's admins can manage feeds.")
    assert fake.documents(user.chat_id) == []

    rows = "".join(f'<outline text="f{i}" xmlUrl="{feeds.url(f"/f{i}")}"/>'
                   for i in range(MAX_OUTLINES + 1))
    cases = [
        ("lol.opml", BILLION_LAUGHS, {}, "refused: the file has a DOCTYPE declaration"),
        ("many.opml", f"<opml><body>{rows}</body></opml>".encode(), {},
         "the file has 2,001 outlines; the limit is 2,000. Split the list into smaller files. "
         "Nothing was changed."),
        ("scan.pdf", b"%PDF-1.7 not xml", {"mime_type": "application/pdf"},
         "this is not an OPML file: it is not well-formed XML"),
        ("world.xml", b'<rss version="2.0"><channel><title>x</title></channel></rss>', {},
         "its root element is <rss>, not <opml>"),
    ]
    for name, content, options, why in cases:
        reply = upload(admin, name, content, **options)  # type: ignore[arg-type]
        assert reply.startswith("I can't import that file: "), reply
        assert why in reply and reply.endswith("Nothing was changed."), reply

    downloads = len(fake.downloads)
    big = upload(admin, "big.opml", good, declared_size=MAX_OPML_BYTES + 1)
    assert big == ("That file is 1,048,577 bytes; an OPML feed list may be at most 1,048,576 "
                   "(1 MB). Nothing was imported.")
    assert len(fake.downloads) == downloads  # the size Telegram stated was enough
    # A file whose update understates its size is caught at getFile, before the download.
    huge = good + b" " * MAX_OPML_BYTES
    assert upload(admin, "huge.opml", huge, declared_size=100) == (
        f"That file is {len(huge):,} bytes; the limit is 1,048,576. Nothing was imported.")
    assert len(fake.downloads) == downloads

    fake.fail("getFile", status=500, description="Internal Server Error")
    assert upload(admin, "list.opml", good) == (
        "I couldn't download that file from Telegram. Please send it again. Nothing was imported.")

    assert feeds.requests_for("/wire.xml") == []  # no feed of any refused file was fetched
    assert read_opml(export(admin).document[1]) == [  # type: ignore[index]
        OpmlFeed(news.url, "World News")]
    assert "file/bot" not in bot.output()  # the file URL (it holds the token) is never logged
