// The admin statistics page: draws the per-day charts from the JSON the page embeds
// (json_script "statistics-data") with the vendored Chart.js (static/vendor/chartjs).
(function () {
  "use strict";

  var STATUS_COLOURS = {
    PENDING: "#9e9e9e",
    PROCESSING: "#1e88e5",
    COMPLETED: "#43a047",
    FAILED: "#e53935",
    CANCELLED: "#fb8c00",
  };
  var PALETTE = ["#3949ab", "#00897b", "#8e24aa", "#f4511e", "#6d4c41", "#c0ca33", "#546e7a"];

  function stackedBars(canvas, labels, datasets, extra) {
    return new window.Chart(canvas, {
      type: "bar",
      data: { labels: labels, datasets: datasets.concat(extra || []) },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { stacked: true },
          y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } },
          signups: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, ticks: { precision: 0 }, display: !!extra },
        },
      },
    });
  }

  function draw() {
    var source = document.getElementById("statistics-data");
    if (!source || !window.Chart) {
      return;
    }
    var data = JSON.parse(source.textContent);
    var labels = data.days;

    var byStatus = data.jobsByStatus.map(function (series) {
      return {
        label: series.label,
        data: series.data,
        backgroundColor: STATUS_COLOURS[series.key] || "#777",
        stack: "jobs",
      };
    });
    var signups = {
      type: "line",
      label: "Sign-ups",
      data: data.signups,
      borderColor: "#000",
      backgroundColor: "#000",
      yAxisID: "signups",
    };
    stackedBars(document.getElementById("chart-jobs-status"), labels, byStatus, [signups]);

    var byModel = data.jobsByModel.map(function (series, n) {
      return { label: series.label, data: series.data, backgroundColor: PALETTE[n % PALETTE.length], stack: "jobs" };
    });
    stackedBars(document.getElementById("chart-jobs-model"), labels, byModel);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
