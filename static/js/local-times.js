// Times are rendered in the server's zone with its name; this shows each <time data-local-time>
// in the reader's own time zone instead, with the zone's short name, keeping the machine-readable
// datetime attribute. Elements added later (polled partials) are converted as they arrive.
(function () {
  var format;
  try {
    format = new Intl.DateTimeFormat(undefined, {
      year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", timeZoneName: "short",
    });
  } catch (error) {
    return;
  }
  function localise(root) {
    root.querySelectorAll("time[data-local-time]:not([data-localised])").forEach(function (element) {
      var moment = new Date(element.getAttribute("datetime"));
      if (isNaN(moment.getTime())) return;
      element.textContent = format.format(moment);
      element.setAttribute("data-localised", "");
    });
  }
  localise(document);
  new MutationObserver(function () {
    localise(document);
  }).observe(document.body, { childList: true, subtree: true });
})();
