// Keeps server-rendered partials fresh: an element with data-poll-url is refreshed from the
// partial at that URL every data-poll-interval milliseconds. A partial that leaves the attribute
// out (the job has finished) ends the polling.
//
// While the partial's data-status stays the same, only its [data-live] parts and progress bars
// are updated in place, so keyboard focus (on "Cancel and refund", say) and a screen reader's
// place are kept. When the status changes the element is replaced, its data-announce sentence is
// read out through #job-announcer (an aria-live region outside it), and focus, if it was inside,
// moves to the same control in the new element or else to its heading.
// When the session has ended, the partial's URL redirects to the log-in page: the element then
// says so, with a link to log in again, and polling stops.
(function () {
  function announce(text) {
    var region = document.getElementById("job-announcer");
    if (!region || !text) return;
    region.textContent = "";
    setTimeout(function () { region.textContent = text; }, 50); // a change, even for the same words
  }

  function updateInPlace(element, fresh) {
    fresh.querySelectorAll("[data-live]").forEach(function (part) {
      var old = element.querySelector('[data-live="' + part.dataset.live + '"]');
      if (old && old.textContent !== part.textContent) old.textContent = part.textContent;
    });
    fresh.querySelectorAll("progress[id]").forEach(function (bar) {
      var old = document.getElementById(bar.id);
      if (old && element.contains(old)) {
        old.value = bar.value;
        old.textContent = bar.textContent;
      }
    });
    Array.prototype.forEach.call(fresh.attributes, function (attribute) {
      if (attribute.name.indexOf("data-") === 0) element.setAttribute(attribute.name, attribute.value);
    });
    if (!fresh.dataset.pollUrl) element.removeAttribute("data-poll-url");
  }

  function replace(element, fresh) {
    var focused = document.activeElement;
    var hadFocus = focused && element.contains(focused);
    element.replaceWith(fresh);
    if (hadFocus) {
      var same = focused.id && document.getElementById(focused.id);
      var target = same || fresh.querySelector("h2[tabindex], h3[tabindex]");
      if (target) target.focus();
    }
    if (fresh.dataset.status !== element.dataset.status) announce(fresh.dataset.announce);
    fresh.querySelectorAll("[data-poll-url]").forEach(schedule);
    document.dispatchEvent(new CustomEvent("partial:replaced", { detail: fresh }));
  }

  function sessionEnded(element) {
    var login = element.dataset.loginUrl || "/accounts/login/?next=" + encodeURIComponent(location.pathname);
    element.removeAttribute("data-poll-url");
    var note = document.createElement("p");
    note.className = "message error";
    note.setAttribute("role", "alert");
    note.dataset.testid = "session-ended";
    note.append("Your session has ended, so this page stopped updating. ");
    var link = document.createElement("a");
    link.href = login;
    link.textContent = "Log in again";
    note.append(link, " to follow this job.");
    element.prepend(note);
  }

  function schedule(element) {
    var url = element.dataset.pollUrl;
    if (!url) return;
    var interval = parseInt(element.dataset.pollInterval || "2000", 10);
    setTimeout(function () {
      fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (response) {
          if (response.redirected && new URL(response.url).pathname !== new URL(url, location.href).pathname) {
            return null; // sent to the log-in page
          }
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.text();
        })
        .then(function (html) {
          if (html === null) return sessionEnded(element);
          var template = document.createElement("template");
          template.innerHTML = html.trim();
          var fresh = template.content.firstElementChild;
          if (!fresh || (element.id && fresh.id !== element.id)) return sessionEnded(element);
          if (element.dataset.status && fresh.dataset.status === element.dataset.status) {
            updateInPlace(element, fresh);
            schedule(element);
          } else {
            replace(element, fresh);
            schedule(fresh);
          }
        })
        .catch(function () {
          schedule(element); // a network hiccup: try again at the next interval
        });
    }, interval);
  }
  document.querySelectorAll("[data-poll-url]").forEach(schedule);
})();
