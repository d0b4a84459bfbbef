// The upload form: offer only the stems of the chosen model, and show that a long upload is busy.
(function () {
  var form = document.querySelector("[data-upload-form]");
  if (!form) return;
  var model = form.querySelector("#id_model");
  var stems = form.querySelector("#id_stems");

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
  form.addEventListener("submit", function () {
    var button = form.querySelector("button[type=submit]");
    button.disabled = true;
    button.textContent = button.dataset.busyLabel;
  });
})();
