from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import api_view, authentication_classes, permission_classes, throttle_classes
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework_simplejwt.tokens import AccessToken

from accounts.services import user_create
from accounts.throttles import LoginAccountThrottle, LoginIPThrottle, RegisterAccountThrottle, RegisterIPThrottle

INVALID_CREDENTIALS = "Unable to log in with the provided credentials."


class UserOutput(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    username = serializers.CharField()
    credits = serializers.DecimalField(max_digits=10, decimal_places=2)
    date_joined = serializers.DateTimeField()


class TokenOutput(serializers.Serializer):
    access_token = serializers.CharField()
    token_type = serializers.CharField(default="bearer")


class RegisterOutput(TokenOutput):
    user = UserOutput()


def _token_for(user) -> dict:
    return {"access_token": str(AccessToken.for_user(user)), "token_type": "bearer"}


class RegisterInput(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    username = serializers.RegexField(
        r"^[\w.@+-]+\Z",
        max_length=150,
        error_messages={"invalid": "Use only letters, digits and @/./+/-/_ characters."},
    )
    password = serializers.CharField(max_length=1024, trim_whitespace=False, style={"input_type": "password"})


@extend_schema(request=RegisterInput, responses={201: RegisterOutput}, tags=["auth"])
@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
@throttle_classes([RegisterIPThrottle, RegisterAccountThrottle])
def register(request):
    """Create an account with the signup bonus and return an access token."""
    data = RegisterInput(data=request.data)
    data.is_valid(raise_exception=True)
    user = user_create(**data.validated_data)
    return Response(
        {**_token_for(user), "user": UserOutput(user).data},
        status=status.HTTP_201_CREATED,
    )


class LoginInput(serializers.Serializer):
    email = serializers.CharField(required=False, max_length=254, help_text="Email or username")
    username = serializers.CharField(required=False, max_length=254, help_text="Username or email")
    password = serializers.CharField(max_length=1024, trim_whitespace=False, style={"input_type": "password"})

    def validate(self, attrs):
        if not attrs.get("email") and not attrs.get("username"):
            raise serializers.ValidationError({"email": "Give your email address or your username."})
        return attrs


@extend_schema(request=LoginInput, responses={200: TokenOutput}, tags=["auth"])
@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
@throttle_classes([LoginIPThrottle, LoginAccountThrottle])
def login(request):
    """Exchange an email or username and a password for an access token."""
    data = LoginInput(data=request.data)
    data.is_valid(raise_exception=True)
    identifier = data.validated_data.get("email") or data.validated_data["username"]
    user = authenticate(request, username=identifier, password=data.validated_data["password"])
    if user is None:
        return Response(
            {"detail": INVALID_CREDENTIALS},
            status=status.HTTP_401_UNAUTHORIZED,
            headers={"WWW-Authenticate": 'Bearer realm="api"'},
        )
    return Response(_token_for(user))


@extend_schema(responses={200: UserOutput}, tags=["auth"])
@api_view(["GET"])
def me(request):
    """The signed-in user, with the current balance."""
    return Response(UserOutput(request.user).data)
