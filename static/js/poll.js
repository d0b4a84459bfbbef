// Keeps server-rendered partials fresh: an element with data-poll-url is replaced by the
// partial at that URL every data-poll-interval milliseconds. A partial that leaves the
// attribute out (the job has finished) ends the polling.
(function () {
  function schedule(element) {
    var url = element.dataset.pollUrl;
    if (!url) return;
    var interval = parseInt(element.dataset.pollInterval || "2000", 10);
    setTimeout(function () {
      fetch(url, { credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.text();
        })
        .then(function (html) {
          var template = document.createElement("template");
          template.innerHTML = html.trim();
          var fresh = template.content.firstElementChild;
          element.replaceWith(fresh);
          schedule(fresh);
        })
        .catch(function () {
          schedule(element); // a network hiccup: try again at the next interval
        });
    }, interval);
  }
  document.querySelectorAll("[data-poll-url]").forEach(schedule);
})();
