/* The live auction page: applies the auction's event stream (relayed by the portal at
   /auctions/{id}/events) to the price, the bid list, the status and the countdown.
   No build step, no dependencies. */
(function () {
  "use strict";

  var root = document.getElementById("auction");
  if (!root) { return; }

  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  var FINAL = { settled: true, unsold: true, cancelled: true };
  var data = root.dataset;
  var currency = data.currency;
  var exponent = parseInt(data.exponent, 10) || 0;
  var userId = data.userId;
  var state = {
    status: data.status,
    endsAt: Date.parse(data.endsAt),
    bidCount: parseInt(data.bidCount, 10) || 0,
    currentPrice: data.currentPrice === "" ? null : parseInt(data.currentPrice, 10),
    minIncrement: parseInt(data.minIncrement, 10),
    startingPrice: parseInt(data.startingPrice, 10),
    extensions: parseInt(data.extensions, 10) || 0
  };
  var formatter = null;
  try {
    formatter = new Intl.NumberFormat("en-US", {
      style: "currency", currency: currency,
      minimumFractionDigits: exponent, maximumFractionDigits: exponent
    });
  } catch (error) { formatter = null; }

  function byId(id) { return document.getElementById(id); }
  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function money(minor) {
    if (minor === null || minor === undefined) { return "—"; }
    var value = minor / Math.pow(10, exponent);
    return formatter ? formatter.format(value) : value.toFixed(exponent) + " " + currency;
  }

  function when(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return ""; }
    return pad(d.getUTCDate()) + " " + MONTHS[d.getUTCMonth()] + " " + d.getUTCFullYear() +
      ", " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + " UTC";
  }

  function setText(id, text) {
    var element = byId(id);
    if (element && element.textContent !== text) { element.textContent = text; }
  }

  function minimum() {
    if (!state.bidCount || state.currentPrice === null) { return state.startingPrice; }
    return state.currentPrice + state.minIncrement;
  }

  function badge(status) {
    var span = document.createElement("span");
    span.className = "badge badge-" + status;
    span.textContent = status.charAt(0).toUpperCase() + status.slice(1);
    return span;
  }

  function closeBidding() {
    var region = byId("bid-region");
    if (region && !region.querySelector(".bidding-closed")) {
      var form = region.querySelector("form");
      if (form) { form.remove(); }
      var note = document.createElement("p");
      note.className = "meta bidding-closed";
      note.textContent = "Bidding is closed.";
      region.appendChild(note);
    }
    var buyNow = byId("buy-now-form");
    if (buyNow) { buyNow.remove(); }
  }

  function apply(auction) {
    if (!auction) { return; }
    if (auction.status) { state.status = auction.status; }
    if (auction.ends_at) { state.endsAt = Date.parse(auction.ends_at); }
    if (typeof auction.bid_count === "number") { state.bidCount = auction.bid_count; }
    if (auction.current_price !== undefined) { state.currentPrice = auction.current_price; }
    if (typeof auction.extensions === "number") { state.extensions = auction.extensions; }

    setText("current-price", money(state.bidCount ? state.currentPrice : state.startingPrice));
    setText("price-heading", state.bidCount ? "Current price" : "Starting price");
    setText("bid-count", String(state.bidCount));
    setText("min-bid", "at least " + money(minimum()));
    setText("f-amount-hint", "At least " + money(minimum()));
    setText("ends-at", when(auction.ends_at || new Date(state.endsAt).toISOString()));
    if (typeof auction.reserve_met === "boolean") {
      setText("reserve", auction.reserve_met ? "Met" : "Not met yet");
    }
    var status = byId("auction-status");
    if (status && status.textContent.trim().toLowerCase() !== state.status) {
      status.replaceChildren(badge(state.status));
    }
    root.dataset.status = state.status;
    if (state.extensions > 0) {
      var note = byId("extension-note");
      if (note) {
        note.hidden = false;
        setText("extension-note", "Extended " + state.extensions + " time" +
          (state.extensions === 1 ? "" : "s") + ": late bids move the end (soft close).");
      }
    }
    if (state.status !== "open" && state.status !== "scheduled") { closeBidding(); }
    tick();
  }

  function addBid(bid) {
    var list = byId("bid-list");
    if (!list || !bid || list.querySelector('[data-bid-id="' + bid.id + '"]')) { return; }
    var item = document.createElement("li");
    item.dataset.bidId = bid.id;
    item.className = "new";
    var amount = document.createElement("span");
    amount.className = "amount";
    amount.textContent = money(bid.amount);
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = bid.bidder_id === userId ? "You" : "Bidder " + String(bid.bidder_id).slice(0, 8);
    item.append(amount, " ", who, " ");
    if (bid.auto) {
      var tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = "automatic";
      item.append(tag, " ");
    }
    var time = document.createElement("time");
    time.dateTime = bid.created_at;
    time.textContent = when(bid.created_at);
    item.append(time);
    list.prepend(item);
    var empty = byId("no-bids");
    if (empty) { empty.hidden = true; }
    // The last answer to my own bid is stale once someone else bids over it.
    var result = document.querySelector(".bid-result");
    if (result && userId && bid.bidder_id !== userId) {
      result.className = "alert alert-warning bid-result";
      result.textContent = "Another bidder bid " + money(bid.amount) + ": you are outbid.";
    }
  }

  function tick() {
    var countdown = byId("countdown");
    if (!countdown) { return; }
    var text;
    if (FINAL[state.status]) {
      text = "Ended";
    } else if (state.status === "closing") {
      text = "Closing…";
    } else if (state.status === "scheduled") {
      text = "Not started yet";
    } else {
      var left = Math.max(0, Math.floor((state.endsAt - Date.now()) / 1000));
      if (left === 0) {
        text = "Closing…";
      } else {
        var days = Math.floor(left / 86400);
        var rest = left % 86400;
        text = (days ? days + "d " : "") + pad(Math.floor(rest / 3600)) + ":" +
          pad(Math.floor((rest % 3600) / 60)) + ":" + pad(rest % 60);
      }
    }
    if (countdown.textContent !== text) { countdown.textContent = text; }
  }

  function liveState(name, text) {
    var element = byId("live-state");
    if (element) { element.dataset.state = name; element.textContent = text; }
  }

  var source = null;
  function connect() {
    if (!window.EventSource) { liveState("off", "Live updates are not available in this browser."); return; }
    source = new EventSource("/auctions/" + data.auctionId + "/events");
    source.onopen = function () { liveState("live", "Live: new bids appear as they are placed."); };
    source.onerror = function () {
      if (FINAL[state.status]) { return; }
      liveState("reconnecting", "Reconnecting to live updates…");
      if (source.readyState === EventSource.CLOSED) { window.setTimeout(connect, 3000); }
    };
    var handle = function (event) {
      var payload;
      try { payload = JSON.parse(event.data); } catch (error) { return; }
      apply(payload);
      if (event.type === "bid" && payload.bid) { addBid(payload.bid); }
      if (FINAL[state.status] && source) {
        source.close();
        liveState("ended", "This auction has ended.");
      }
    };
    ["state", "bid", "extended", "opened", "closed", "settled", "unsold", "cancelled"].forEach(
      function (name) { source.addEventListener(name, handle); }
    );
  }

  tick();
  window.setInterval(tick, 1000);
  connect();
  window.addEventListener("pagehide", function () { if (source) { source.close(); } });
}());
