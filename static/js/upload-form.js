// The upload form: offer only the stems of the chosen model; take several files at once (chosen or
// dropped on the form), each measured in the browser for its price and the balance after, then
// uploaded as its own job with a progress bar, the bytes and time left, and a cancel button.
// Without this script the form still posts one file to the page view.
(function () {
  var form = document.querySelector("[data-upload-form]");
  if (!form) return;
  var model = form.querySelector("#id_model");
  var stems = form.querySelector("#id_stems");
  var fileInput = form.querySelector("#id_file");
  var preview = form.querySelector("#id_preview");
  var list = document.getElementById("upload-list");
  var balanceOut = document.querySelectorAll("[data-testid=balance]");
  var balance = parseFloat(form.dataset.balance || "0");
  var periodSeconds = parseInt(form.dataset.pricePeriod || "600", 10);
  var csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;

  function showStemsOfModel() {
    var available = (model.selectedOptions[0].dataset.stems || "").split(" ");
    Array.prototype.forEach.call(stems.options, function (option) {
      var allowed = option.value === "all" || available.indexOf(option.value) !== -1;
      option.hidden = !allowed;
      option.disabled = !allowed;
    });
    if (stems.selectedOptions[0].disabled) stems.value = "all";
  }
  model.addEventListener("change", showStemsOfModel);
  showStemsOfModel();

  function credits(value) {
    var text = Number.isInteger(value) ? String(value) : value.toFixed(2);
    return text + (value === 1 ? " credit" : " credits");
  }

  function megabytes(bytes) {
    return (bytes / 1048576).toFixed(1) + " MB";
  }

  function showBalance() {
    balanceOut.forEach(function (element) {
      element.textContent = Number.isInteger(balance) ? String(balance) : balance.toFixed(2);
    });
  }

  // The length of a file as the browser decodes it: the price it will be charged (the server
  // measures again by decoding the whole file, and that is what is charged).
  function probeDuration(file) {
    return new Promise(function (resolve) {
      var audio = document.createElement("audio");
      var url = URL.createObjectURL(file);
      function done(value) {
        URL.revokeObjectURL(url);
        resolve(value);
      }
      audio.preload = "metadata";
      audio.addEventListener("loadedmetadata", function () {
        done(isFinite(audio.duration) ? audio.duration : null);
      });
      audio.addEventListener("error", function () {
        done(null);
      });
      audio.src = url;
    });
  }

  function priceOf(seconds) {
    var multiplier = parseInt(model.selectedOptions[0].dataset.price || "1", 10);
    return multiplier * Math.max(1, Math.ceil(seconds / periodSeconds));
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function addRow(file) {
    var row = element("li", "upload-item");
    row.appendChild(element("span", "upload-name", file.name));
    var status = element("span", "upload-status", "Measuring…");
    var bar = element("progress");
    bar.max = file.size;
    bar.value = 0;
    bar.setAttribute("aria-label", "Upload of " + file.name);
    var cancel = element("button", "secondary", "Cancel");
    cancel.type = "button";
    cancel.setAttribute("aria-label", "Cancel the upload of " + file.name);
    row.appendChild(status);
    row.appendChild(bar);
    row.appendChild(cancel);
    list.appendChild(row);
    return { row: row, status: status, bar: bar, cancel: cancel };
  }

  function upload(file, ui, isPreview, price, alone) {
    var data = new FormData();
    data.append("file", file);
    data.append("model", model.value);
    data.append("stems", stems.value);
    data.append("format", form.querySelector("#id_format").value);
    if (isPreview) {
      data.append("preview", "true");
      var start = form.querySelector("#id_preview_start").value.trim();
      if (start) {
        var parts = start.split(":");
        var seconds = parts.length === 2 ? parseInt(parts[0], 10) * 60 + parseInt(parts[1], 10) : parseFloat(start);
        if (isFinite(seconds)) data.append("preview_start", String(seconds));
      }
    }
    var request = new XMLHttpRequest();
    var started = Date.now();
    request.open("POST", form.dataset.apiUrl);
    request.setRequestHeader("X-CSRFToken", csrf);
    request.setRequestHeader("Idempotency-Key", crypto.randomUUID ? crypto.randomUUID() : String(Math.random()));
    request.upload.addEventListener("progress", function (event) {
      if (!event.lengthComputable) return;
      ui.bar.value = event.loaded;
      var elapsed = (Date.now() - started) / 1000;
      var rate = elapsed > 0 ? event.loaded / elapsed : 0;
      var left = rate > 0 ? Math.ceil((event.total - event.loaded) / rate) : null;
      ui.status.textContent =
        megabytes(event.loaded) + " of " + megabytes(event.total) + (left !== null ? ", about " + left + " s left" : "");
    });
    request.addEventListener("load", function () {
      ui.cancel.remove();
      var body = {};
      try {
        body = JSON.parse(request.responseText);
      } catch (error) {
        body = {};
      }
      if (request.status === 200 || request.status === 202) {
        balance = parseFloat(body.credits_remaining);
        showBalance();
        ui.status.textContent = "";
        var link = element("a", "", isPreview ? "Preview queued: open it" : "Queued: open the job");
        link.href = form.dataset.jobUrl.replace("00000000-0000-0000-0000-000000000000", body.job_id);
        ui.status.appendChild(link);
        if (alone) {
          window.location.assign(link.href); // one song: follow it on its page, as without the script
          return;
        }
        ui.bar.value = ui.bar.max;
        refreshJobList();
      } else {
        if (price) balance += price; // it was counted as spent when it was queued
        ui.status.textContent = body.detail || "The upload failed (HTTP " + request.status + ").";
        ui.row.classList.add("failed");
      }
    });
    request.addEventListener("error", function () {
      if (price) balance += price;
      ui.status.textContent = "The upload failed: the connection was lost.";
      ui.row.classList.add("failed");
      ui.cancel.remove();
    });
    request.addEventListener("abort", function () {
      if (price) balance += price;
      ui.status.textContent = "Cancelled: nothing was charged.";
      ui.cancel.remove();
    });
    ui.cancel.addEventListener("click", function () {
      request.abort();
    });
    request.send(data);
  }

  function refreshJobList() {
    var jobs = document.getElementById("job-list");
    if (!jobs) return;
    fetch(form.dataset.jobListUrl, { credentials: "same-origin" })
      .then(function (response) {
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (!html) return;
        var template = document.createElement("template");
        template.innerHTML = html.trim();
        document.getElementById("job-list").replaceWith(template.content.firstElementChild);
      });
  }

  // Files are measured one after another, so "balance after" counts the ones before.
  function takeFiles(files) {
    var isPreview = preview && preview.checked;
    var alone = files.length === 1;
    var chain = Promise.resolve();
    Array.prototype.forEach.call(files, function (file) {
      var ui = addRow(file);
      var cancelled = false;
      ui.cancel.addEventListener("click", function () {
        cancelled = true;
      });
      chain = chain.then(function () {
        return probeDuration(file).then(function (seconds) {
          if (cancelled) {
            ui.status.textContent = "Cancelled.";
            ui.cancel.remove();
            return;
          }
          var price = isPreview ? 0 : seconds === null ? null : priceOf(seconds);
          if (price === null) {
            ui.status.textContent = "Price unknown until the server measures it. Uploading…";
          } else if (price > balance) {
            ui.status.textContent =
              credits(price) + ", but your balance is " + credits(balance) + ": not uploaded. ";
            var buy = element("a", "", "Buy credits");
            buy.href = form.dataset.creditsUrl;
            ui.status.appendChild(buy);
            ui.row.classList.add("failed");
            ui.cancel.remove();
            return;
          } else {
            balance -= price;
            ui.status.textContent = isPreview
              ? "Free preview. Uploading…"
              : credits(price) + "; balance after: " + credits(balance) + ". Uploading…";
          }
          upload(file, ui, isPreview, price, alone);
        });
      });
    });
  }

  var urlInput = form.querySelector("#id_url");
  fileInput.addEventListener("change", function () {
    fileInput.setCustomValidity("");
  });
  form.addEventListener("submit", function (event) {
    if (!fileInput.files.length && urlInput && urlInput.value.trim()) {
      return; // the server fetches the song from its address: an ordinary form post
    }
    event.preventDefault();
    if (!fileInput.files.length) {
      fileInput.setCustomValidity("Choose or drop a song, or give its address.");
      fileInput.reportValidity();
      return;
    }
    takeFiles(Array.prototype.slice.call(fileInput.files));
    fileInput.value = "";
  });
  ["dragenter", "dragover"].forEach(function (name) {
    form.addEventListener(name, function (event) {
      event.preventDefault();
      form.classList.add("dragging");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    form.addEventListener(name, function () {
      form.classList.remove("dragging");
    });
  });
  form.addEventListener("drop", function (event) {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) {
      takeFiles(Array.prototype.slice.call(event.dataTransfer.files));
    }
  });
})();
